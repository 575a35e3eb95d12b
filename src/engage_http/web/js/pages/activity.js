// Your activity, newest first: sign-ins and failed ones, sessions ended, password,
// email and second-factor changes, with the address and the device; "Load more".

import { api } from "../api.js";
import { describeDevice } from "../devices.js";
import { el } from "../dom.js";
import { whileBusy } from "../forms.js";
import { backToAccount, pageHead } from "../layout.js";
import { formatMoment } from "../format.js";

const PAGE_SIZE = 20;
const KINDS = {
  signup: "Account created",
  login: "Signed in",
  "login.failed": "Failed sign-in",
  "login.locked": "Sign-in locked after failed attempts",
  "login.unlocked": "Sign-in unlocked by an operator",
  logout: "Logged out",
  "refresh.reused": "An old session token was used again; that session ended",
  "password.changed": "Password changed",
  "password.reset": "Password reset",
  "email.changed": "Email address changed",
  "mfa.enabled": "Second factor turned on",
  "mfa.disabled": "Second factor turned off",
  "mfa.reset": "Second factor turned off by an operator",
  "mfa.recovery_codes": "New recovery codes made",
  "mfa.recovery_used": "Recovery code used",
  "session.ended": "Session ended",
  "api_key.created": "API key created",
  "api_key.revoked": "API key revoked",
};

function entry(item) {
  return el(
    "li",
    { class: "log-entry" },
    el("strong", { text: KINDS[item.kind] ?? item.kind }),
    el("time", { datetime: item.at, text: formatMoment(new Date(item.at)) }),
    el("span", { class: "hint", title: item.user_agent ?? undefined }, `${item.ip ?? "Unknown address"} · ${describeDevice(item.user_agent)}`),
  );
}

export async function render(view, app) {
  const list = el("ol", { class: "log", "aria-labelledby": "activity-title" });
  const status = el("p", { class: "list-status", role: "status", tabindex: "-1", text: "Loading…", "data-loading": true });
  const more = el("button", { type: "button", class: "button", text: "Load more", hidden: true });
  view.append(
    pageHead("Activity", backToAccount()),
    el(
      "section",
      { class: "card", "aria-labelledby": "activity-title" },
      el("h2", { id: "activity-title", text: "Sign-ins and account changes" }),
      el("p", { class: "hint", text: "Newest first, with the address and the device. Something you did not do? Change your password." }),
      list,
      status,
      more,
    ),
  );

  let cursor = null;
  async function load() {
    const page = await api.get("/api/auth/activity", { limit: PAGE_SIZE, cursor });
    list.append(...page.items.map(entry));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    const count = list.children.length;
    if (!count) status.textContent = "Nothing recorded yet.";
    else status.textContent = cursor ? `The latest ${count} entries.` : `All ${count} entries.`;
    return page.items.length;
  }

  more.addEventListener("click", () =>
    whileBusy(more, status, async () => {
      app.announce(`${await load()} more entries loaded.`);
      if (more.hidden) status.focus();
    }),
  );

  app.signedIn(app.user ?? (await api.get("/api/auth/me")));
  await load();
}
