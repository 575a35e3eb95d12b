// Sign in: email and password, then, with the second factor on, a code from the
// authenticator app (or a recovery code); the API's messages next to their field.

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
      if (login.mfa_required) {
        askForCode(view, app, login.challenge);
        return;
      }
      finish(app, login);
    },
  });
  email.input.focus();
}

function finish(app, login) {
  app.signedIn(login.user);
  const next = app.returnTo || "/";
  app.returnTo = null;
  app.navigate(next, { replace: true });
}

/** The second step: the challenge of the login and one code (5 tries, 5 minutes). */
function askForCode(view, app, challenge) {
  const code = field({
    label: "Code",
    name: "code",
    hint: "The 6 digits your authenticator app shows, or one of your recovery codes.",
    autocomplete: "one-time-code",
    inputmode: "text",
    required: true,
    spellcheck: "false",
  });
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    code.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Verify" }),
    el("p", { class: "aside" }, el("a", { href: "/signin", text: "Start again" })),
  );
  view.replaceChildren(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Two-step verification" }),
      form,
    ),
  );
  handleSubmit(form, {
    fields: [code],
    status,
    fieldFor: { 401: "code" },
    messages: { 401: "That code did not work. Try the current one, or sign in again." },
    submit: async (values) => {
      finish(app, await api.post("/api/auth/mfa/verify", { challenge, code: values.code.trim() }));
    },
  });
  code.input.focus();
}
