// Create an account, then sign in with it.

import { api } from "../api.js";
import { el } from "../dom.js";
import { field, handleSubmit, statusLine } from "../forms.js";

export async function render(view, app) {
  const email = field({
    label: "Email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
  });
  const password = field({
    label: "Password",
    name: "password",
    type: "password",
    autocomplete: "new-password",
    hint: "8 to 256 characters; any characters, spaces too.",
    required: true,
  });
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    email.wrapper,
    password.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Create account" }),
  );
  view.append(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Create an account" }),
      form,
      el("p", { class: "aside" }, "Already have one? ", el("a", { href: "/signin", text: "Sign in" })),
    ),
  );
  handleSubmit(form, {
    fields: [email, password],
    status,
    fieldFor: { 409: "email" },
    messages: { 409: "This email already has an account. Sign in instead, or use another email." },
    submit: async (values) => {
      await api.post("/api/auth/signup", values);
      const login = await api.post("/api/auth/login", values);
      app.signedIn(login.user);
      app.navigate("/", { replace: true });
    },
  });
  email.input.focus();
}
