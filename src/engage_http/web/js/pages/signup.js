// Create an account, then sign in with it.

import { api, ApiError } from "../api.js";
import { el } from "../dom.js";
import { describeProblem, emailField, passwordField, submitForm } from "../forms.js";
import { narrowCard } from "../layout.js";

export async function render(view, app) {
  const email = emailField();
  const password = passwordField({ autocomplete: "new-password", hint: "8 to 256 characters; any characters, spaces too." });
  const form = submitForm([email, password], "Create account", {
    fieldFor: { 409: "email" },
    messages: { 409: "This email already has an account. Sign in instead, or use another email." },
    submit: async (values) => {
      const created = await api.post("/api/auth/signup", values);
      let login;
      try {
        login = await api.post("/api/auth/login", values);
      } catch (error) {
        // The account exists now: sending this form again would only say the email is taken.
        app.notice = createdNotice(created.email, error);
        app.navigate("/signin", { replace: true });
        return;
      }
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

/** What the sign-in page says when the new account could not sign in at once. */
function createdNotice(email, error) {
  if (error instanceof ApiError && error.status === 403) {
    // ENGAGE_REQUIRE_VERIFIED_EMAIL: no sign-in before the address is verified.
    return `Your account is created. Open the link we mailed to ${email} to verify the address, then sign in.`;
  }
  return `Your account is created; sign in with it. ${describeProblem(error)}`;
}
