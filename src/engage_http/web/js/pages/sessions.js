// Your sessions, one per signed-in device: its address and when it signed in
// and was last seen, this device marked; end any other at once, or log out here.

import { api } from "../api.js";
import { describeDevice } from "../devices.js";
import { el, nextId } from "../dom.js";
import { showStatus, statusLine, whileBusy } from "../forms.js";
import { backToAccount, pageHead } from "../layout.js";
import { formatMoment } from "../format.js";

const moment = (iso) => el("time", { datetime: iso, text: formatMoment(new Date(iso)) });
const fact = (term, value) => el("div", {}, el("dt", { text: term }), el("dd", {}, value));
const counted = (count) => (count === 1 ? "1 session is signed in." : `${count} sessions are signed in.`);

export async function render(view, app) {
  const status = statusLine();
  const count = el("p", { class: "list-status", tabindex: "-1", text: "Loading…", "data-loading": true });
  const list = el("ul", { class: "device-list", "aria-labelledby": "devices-title" });
  view.append(
    pageHead("Sessions", backToAccount()),
    el(
      "section",
      { class: "card", "aria-labelledby": "devices-title" },
      el("h2", { id: "devices-title", text: "Signed-in devices" }),
      el("p", { class: "hint", text: "Each browser or app signed in as you. End one you do not know: it is signed out at once." }),
      count,
      status,
      list,
    ),
  );

  function ended(row, text) {
    row.remove();
    count.textContent = counted(list.children.length);
    showStatus(status, text, "is-ok");
    count.focus();
  }

  function end(session, row, button) {
    const device = describeDevice(session.user_agent);
    return whileBusy(button, status, async () => {
      if (session.current) {
        await api.post("/api/auth/logout", undefined, { scope: "current" });
        app.signedOut("You are logged out.");
        app.navigate("/signin", { replace: true });
        return;
      }
      const ending = await api.deleteIfThere(`/api/auth/sessions/${encodeURIComponent(session.id)}`);
      ended(row, ending ? `Session ended: ${device} is signed out.` : `That session of ${device} had ended already.`);
    });
  }

  function row(session) {
    const titleId = nextId("device");
    const button = el("button", {
      type: "button",
      class: "button",
      text: session.current ? "Log out here" : "End session",
      "aria-describedby": titleId,
    });
    const item = el(
      "li",
      { class: "device" },
      el(
        "h3",
        { id: titleId },
        describeDevice(session.user_agent),
        session.current ? [" ", el("span", { class: "badge", text: "This device" })] : null,
      ),
      el(
        "dl",
        { class: "facts" },
        fact("Address", session.ip ?? "Unknown"),
        fact("Signed in", moment(session.created_at)),
        fact("Last seen", moment(session.last_seen_at)),
      ),
      session.user_agent ? el("p", { class: "hint device-agent", text: session.user_agent }) : null,
      el("div", { class: "actions" }, button),
    );
    button.addEventListener("click", () => end(session, item, button));
    return item;
  }

  const [{ items }, me] = await Promise.all([api.get("/api/auth/sessions"), app.user ?? api.get("/api/auth/me")]);
  app.signedIn(me);
  // This device first, then the most recently seen.
  items.sort((a, b) => Number(b.current) - Number(a.current) || b.last_seen_at.localeCompare(a.last_seen_at));
  list.replaceChildren(...items.map(row));
  count.textContent = counted(items.length);
}
