// Sign in: email and password; the API's messages next to their field.

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
    autocomplete: "current-password",
    required: true,
  });
  const status = statusLine();
  const notice = app.takeNotice();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    email.wrapper,
    password.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Sign in" }),
    el("p", { class: "aside" }, el("a", { href: "/forgot-password", text: "Forgot your password?" })),
  );
  view.append(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Sign in" }),
      notice ? el("p", { class: "notice", role: "status", text: notice }) : null,
      form,
      el("p", { class: "aside" }, "New here? ", el("a", { href: "/signup", text: "Create an account" })),
    ),
  );
  handleSubmit(form, {
    fields: [email, password],
    status,
    fieldFor: { 401: "password" },
    messages: { 401: "The email or the password is not correct." },
    submit: async (values) => {
      const login = await api.post("/api/auth/login", values);
      app.signedIn(login.user);
      const next = app.returnTo || "/";
      app.returnTo = null;
      app.navigate(next, { replace: true });
    },
  });
  email.input.focus();
}
