// Forgot password: an email address, and a reset link mailed to it if an account uses it.

import { api } from "../api.js";
import { el } from "../dom.js";
import { emailField, submitForm } from "../forms.js";
import { narrowCard } from "../layout.js";

export async function render(view) {
  const email = emailField();
  const form = submitForm([email], "Mail me a reset link", {
    submit: async (values) => {
      await api.post("/api/auth/password/forgot", values);
      return `If an account uses ${values.email.trim()}, a reset link is on its way there.`;
    },
  });
  view.append(
    narrowCard(
      "Forgot your password?",
      el("p", { class: "hint", text: "We mail a link to choose a new one. It works once, for an hour." }),
      form,
      el("p", { class: "aside" }, "Remembered it? ", el("a", { href: "/signin", text: "Sign in" })),
    ),
  );
  email.input.focus();
}
