// The account: who you are, change the password (other sessions end), log out
// here or everywhere, delete the account (asks for the password).

import { api, ApiError } from "../api.js";
import { el } from "../dom.js";
import { describeProblem, field, handleSubmit, OFFLINE, showStatus, statusLine } from "../forms.js";
import { formatDate } from "../format.js";

function passwordField(label, name, autocomplete, hint) {
  return field({ label, name, type: "password", autocomplete, required: true, hint });
}

// Tells password managers whose password a form holds; never sent.
function usernameFor(user) {
  return el("input", { type: "text", name: "username", autocomplete: "username", value: user?.email ?? "", hidden: true });
}

export async function render(view, app) {
  const email = el("dd", { text: app.user?.email ?? "…" });
  const since = el("dd", { text: app.user ? formatDate(new Date(app.user.created_at)) : "…" });
  const factor = el("dd", { text: "…" });

  const current = passwordField("Current password", "current_password", "current-password");
  const next = passwordField("New password", "new_password", "new-password", "8 to 256 characters.");
  const passwordStatus = statusLine();
  const passwordForm = el(
    "form",
    { class: "stack", method: "post" },
    usernameFor(app.user),
    current.wrapper,
    next.wrapper,
    passwordStatus,
    el("button", { type: "submit", class: "button primary", text: "Change password" }),
  );

  const sessionStatus = statusLine();
  const logOut = el("button", { type: "button", class: "button", text: "Log out" });
  const logOutAll = el("button", { type: "button", class: "button", text: "Log out everywhere" });

  const confirm = passwordField("Password", "password", "current-password", "Your password, to confirm.");
  const deleteStatus = statusLine();
  const deleteForm = el(
    "form",
    { class: "stack", method: "post" },
    usernameFor(app.user),
    confirm.wrapper,
    deleteStatus,
    el("button", { type: "submit", class: "button danger", text: "Delete my account and all its metrics" }),
  );

  view.append(
    el("div", { class: "page-head" }, el("h1", { text: "Account" })),
    el(
      "section",
      { class: "card", "aria-labelledby": "profile-title" },
      el("h2", { id: "profile-title", text: "Profile" }),
      el(
        "dl",
        { class: "facts" },
        el("div", {}, el("dt", { text: "Email" }), email),
        el("div", {}, el("dt", { text: "Member since" }), since),
      ),
      el("p", { class: "aside" }, el("a", { href: "/change-email", text: "Change email address" })),
    ),
    el(
      "section",
      { class: "card", "aria-labelledby": "security-title" },
      el("h2", { id: "security-title", text: "Sign-in security" }),
      el("dl", { class: "facts" }, el("div", {}, el("dt", { text: "Second factor" }), factor)),
      el(
        "ul",
        { class: "links" },
        el("li", {}, el("a", { href: "/second-factor", text: "Set up or change the second factor" })),
        el("li", {}, el("a", { href: "/activity", text: "Recent sign-ins and account changes" })),
        el("li", {}, el("a", { href: "/api-keys", text: "API keys for devices and scripts" })),
      ),
    ),
    el(
      "div",
      { class: "columns even" },
      el(
        "section",
        { class: "card", "aria-labelledby": "password-title" },
        el("h2", { id: "password-title", text: "Change password" }),
        el("p", { class: "hint", text: "Every other session of yours ends; this one stays signed in." }),
        passwordForm,
      ),
      el(
        "section",
        { class: "card", "aria-labelledby": "sessions-title" },
        el("h2", { id: "sessions-title", text: "Sessions" }),
        el("p", { class: "hint", text: "Log out of this browser, or end every session on every device." }),
        el("div", { class: "actions" }, logOut, logOutAll),
        sessionStatus,
        el("p", { class: "aside" }, el("a", { href: "/sessions", text: "See each device's session and end one" })),
      ),
    ),
    el(
      "section",
      { class: "card danger-zone", "aria-labelledby": "delete-title" },
      el("h2", { id: "delete-title", text: "Delete account" }),
      el("p", { text: "This deletes your account and every metric you recorded, at once and for good." }),
      deleteForm,
    ),
  );

  handleSubmit(passwordForm, {
    fields: [current, next],
    status: passwordStatus,
    fieldFor: { 403: "current_password" },
    messages: { 403: "The current password is not correct." },
    submit: async (values) => {
      await api.post("/api/auth/password", values);
      passwordForm.reset();
      return "Password changed. Your other sessions have ended.";
    },
  });

  async function endSessions(scope, button) {
    button.disabled = true;
    try {
      await api.post("/api/auth/logout", undefined, { scope });
      app.signedOut(scope === "all" ? "You are logged out everywhere." : "You are logged out.");
      app.navigate("/signin", { replace: true });
    } catch (error) {
      showStatus(sessionStatus, error instanceof ApiError ? describeProblem(error) : OFFLINE, "is-error");
    } finally {
      button.disabled = false;
    }
  }
  logOut.addEventListener("click", () => endSessions("current", logOut));
  logOutAll.addEventListener("click", () => endSessions("all", logOutAll));

  handleSubmit(deleteForm, {
    fields: [confirm],
    status: deleteStatus,
    fieldFor: { 403: "password" },
    messages: { 403: "The password is not correct." },
    submit: async (values) => {
      await api.delete("/api/auth/me", values);
      app.signedOut("Your account and all its metrics are deleted.");
      app.navigate("/signin", { replace: true });
    },
  });

  const me = await api.get("/api/auth/me");
  app.signedIn(me);
  email.textContent = me.email;
  for (const input of view.querySelectorAll("input[name=username]")) input.value = me.email;
  since.textContent = formatDate(new Date(me.created_at));
  factor.textContent = me.mfa_enabled ? "On" : "Off";
}
