// The account: who you are, change the password (other sessions end), log out
// here or everywhere, delete the account (asks for the password).

import { api } from "../api.js";
import { el } from "../dom.js";
import { passwordField, statusLine, submitForm, usernameFor, whileBusy } from "../forms.js";
import { pageHead } from "../layout.js";
import { formatDate } from "../format.js";

export async function render(view, app) {
  const email = el("dd", { text: app.user?.email ?? "…" });
  const since = el("dd", { text: app.user ? formatDate(new Date(app.user.created_at)) : "…" });
  const factor = el("dd", { text: "…" });

  const current = passwordField({ label: "Current password", name: "current_password" });
  const next = passwordField({ label: "New password", name: "new_password", autocomplete: "new-password", hint: "8 to 256 characters." });
  const passwordForm = submitForm([usernameFor(app.user), current, next], "Change password", {
    fieldFor: { 403: "current_password" },
    messages: { 403: "The current password is not correct." },
    submit: async (values) => {
      await api.post("/api/auth/password", values);
      passwordForm.reset();
      return "Password changed. Your other sessions have ended.";
    },
  });

  const sessionStatus = statusLine();
  const logOut = el("button", { type: "button", class: "button", text: "Log out" });
  const logOutAll = el("button", { type: "button", class: "button", text: "Log out everywhere" });

  const confirm = passwordField({ hint: "Your password, to confirm." });
  const deleteForm = submitForm(
    [usernameFor(app.user), confirm],
    el("button", { type: "submit", class: "button danger", text: "Delete my account and all its metrics" }),
    {
      fieldFor: { 403: "password" },
      messages: { 403: "The password is not correct." },
      submit: async (values) => {
        await api.delete("/api/auth/me", values);
        app.signedOut("Your account and all its metrics are deleted.");
        app.navigate("/signin", { replace: true });
      },
    },
  );

  view.append(
    pageHead("Account"),
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

  function endSessions(scope, button) {
    return whileBusy(button, sessionStatus, async () => {
      await api.post("/api/auth/logout", undefined, { scope });
      app.signedOut(scope === "all" ? "You are logged out everywhere." : "You are logged out.");
      app.navigate("/signin", { replace: true });
    });
  }
  logOut.addEventListener("click", () => endSessions("current", logOut));
  logOutAll.addEventListener("click", () => endSessions("all", logOutAll));

  const me = await api.get("/api/auth/me");
  app.signedIn(me);
  email.textContent = me.email;
  for (const input of view.querySelectorAll("input[name=username]")) input.value = me.email;
  since.textContent = formatDate(new Date(me.created_at));
  factor.textContent = me.mfa_enabled ? "On" : "Off";
}
