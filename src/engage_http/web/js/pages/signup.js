// Create an account, then sign in with it.

import { api } from "../api.js";
import { el } from "../dom.js";
import { emailField, passwordField, submitForm } from "../forms.js";
import { narrowCard } from "../layout.js";

export async function render(view, app) {
  const email = emailField();
  const password = passwordField({ autocomplete: "new-password", hint: "8 to 256 characters; any characters, spaces too." });
  const form = submitForm([email, password], "Create account", {
    fieldFor: { 409: "email" },
    messages: { 409: "This email already has an account. Sign in instead, or use another email." },
    submit: async (values) => {
      await api.post("/api/auth/signup", values);
      const login = await api.post("/api/auth/login", values);
      app.signedIn(login.user);
      app.navigate("/", { replace: true });
    },
  });
  view.append(
    narrowCard(
      "Create an account",
      form,
      el("p", { class: "aside" }, "Already have one? ", el("a", { href: "/signin", text: "Sign in" })),
    ),
  );
  email.input.focus();
}
