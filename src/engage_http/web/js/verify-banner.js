// The dashboard's banner while the account's address is not verified, with a
// button that mails the link again.

import { api } from "./api.js";
import { el } from "./dom.js";
import { showStatus, whileBusy } from "./forms.js";

export function verificationBanner(app) {
  const status = el("span", { role: "status", "aria-live": "polite" });
  const again = el("button", { type: "button", class: "button", text: "Send the link again" });
  const node = el(
    "div",
    { class: "notice verify-banner", hidden: true },
    el("p", {}, "Your email address is not verified yet: open the link we mailed you. "),
    again,
    " ",
    status,
  );
  let checking = false;

  again.addEventListener("click", () =>
    whileBusy(again, status, async () => {
      await api.post("/api/auth/verify/request");
      showStatus(status, `A new link is on its way to ${app.user?.email ?? "your address"}.`);
    }),
  );

  /** Show or hide the banner for the signed-in user (asks who once, if a login did not say). */
  async function update() {
    if (!app.user) return;
    if (app.user.email_verified === undefined) {
      if (checking) return;
      checking = true;
      try {
        app.signedIn(await api.get("/api/auth/me"));
      } catch {
        return; // the page reports its own failures
      } finally {
        checking = false;
      }
    }
    node.hidden = app.user.email_verified !== false;
  }

  return { node, update };
}
