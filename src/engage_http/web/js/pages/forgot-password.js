// Forgot password: an email address, and a reset link mailed to it if an account uses it.

import { api } from "../api.js";
import { el } from "../dom.js";
import { field, handleSubmit, statusLine } from "../forms.js";

export async function render(view) {
  const email = field({
    label: "Email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
  });
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    email.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Mail me a reset link" }),
  );
  view.append(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Forgot your password?" }),
      el("p", { class: "hint", text: "We mail a link to choose a new one. It works once, for an hour." }),
      form,
      el("p", { class: "aside" }, "Remembered it? ", el("a", { href: "/signin", text: "Sign in" })),
    ),
  );
  handleSubmit(form, {
    fields: [email],
    status,
    submit: async (values) => {
      await api.post("/api/auth/password/forgot", values);
      return `If an account uses ${values.email.trim()}, a reset link is on its way there.`;
    },
  });
  email.input.focus();
}
