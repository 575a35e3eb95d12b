// The frames pages share: a page's heading row, the way back to the account, and
// the one narrow card of the pages for signing in and for links from mails.

import { el } from "./dom.js";

/** A page's heading row: its h1, then ``aside`` (such as backToAccount()). */
export function pageHead(title, aside) {
  return el("div", { class: "page-head" }, el("h1", { text: title }), aside);
}

export function backToAccount() {
  return el("p", { class: "aside" }, el("a", { href: "/account", text: "Back to the account" }));
}

/** The narrow card that is the whole page: its h1, then ``children``. */
export function narrowCard(title, ...children) {
  return el("section", { class: "card narrow" }, el("h1", { text: title }), ...children);
}
