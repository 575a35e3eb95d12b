// Sign in: email and password, then, with the second factor on, a code from the
// authenticator app (or a recovery code); the API's messages next to their field.

import { ApiError, api } from "../api.js";
import { el } from "../dom.js";
import { codeField, emailField, passwordField, submitForm, typedCode } from "../forms.js";
import { narrowCard } from "../layout.js";

export async function render(view, app) {
  const email = emailField();
  const notice = app.takeNotice();
  const form = submitForm([email, passwordField()], "Sign in", {
    fieldFor: { 401: "password" },
    messages: { 401: "The email or the password is not correct." },
    submit: async (values) => {
      const login = await api.post("/api/auth/login", values);
      if (login.mfa_required) {
        askForCode(view, app, login.challenge);
        return;
      }
      finish(app, login);
    },
  });
  view.append(
    narrowCard(
      "Sign in",
      notice ? el("p", { class: "notice", role: "status", text: notice }) : null,
      form,
      el("p", { class: "aside" }, el("a", { href: "/forgot-password", text: "Forgot your password?" })),
      el("p", { class: "aside" }, "New here? ", el("a", { href: "/signup", text: "Create an account" })),
    ),
  );
  email.input.focus();
}

function finish(app, login) {
  app.signedIn(login.user);
  const next = app.returnTo || "/";
  app.returnTo = null;
  app.navigate(next, { replace: true });
}

const ENDED = "That sign-in has ended: it allows 5 codes within 5 minutes. Sign in again.";

/** The second step: the challenge of the login and one code (5 tries, 5 minutes). */
function askForCode(view, app, challenge) {
  const code = codeField("The 6 digits your authenticator app shows, or one of your recovery codes.");
  const form = submitForm([code], "Verify", {
    fieldFor: { 401: "code" },
    messages: { 401: "That code did not work. Try the current one, or sign in again." },
    submit: async (values) => {
      try {
        finish(app, await api.post("/api/auth/mfa/verify", { challenge, code: typedCode(values.code) }));
      } catch (error) {
        // Out of codes or time (or the password changed): no code will do now.
        if (!(error instanceof ApiError) || error.kind !== "challenge-ended") throw error;
        app.notice = ENDED;
        app.navigate("/signin", { replace: true });
      }
    },
  });
  view.replaceChildren(
    narrowCard(
      "Two-step verification",
      form,
      el("p", { class: "aside" }, el("a", { href: "/signin", text: "Start again" })),
    ),
  );
  code.input.focus();
}
