// The web app's shell: a History API router that shows one page module at a
// time in <main>, the signed-in state, and the screen-reader announcer.

import { ApiError, NetworkError, onSignedOut } from "./api.js";
import { clear, el } from "./dom.js";
import { routes } from "./routes.js";
import { readStored, writeStored } from "./storage.js";

const main = document.getElementById("main");
const nav = document.getElementById("site-nav");
const announcer = document.getElementById("announcer");

// Set while this browser has a session (not a secret: only whether to say one ended).
const SIGNED_IN = "engage.signedIn";

const app = {
  /** The signed-in user ({id, email, created_at}) once known. */
  user: null,
  /** A message for the next page to show (e.g. why the session ended). */
  notice: null,
  /** Where to go after signing in. */
  returnTo: null,

  signedIn(user) {
    this.user = user;
    nav.hidden = false;
    writeStored(SIGNED_IN, "1");
  },

  signedOut(notice = null) {
    this.user = null;
    this.notice = notice;
    nav.hidden = true;
    writeStored(SIGNED_IN, null);
  },

  /** Show the page at ``path`` and record it in the history. */
  navigate(path, { replace = false } = {}) {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    show(new URL(path, location.href).pathname, { focus: true });
  },

  /** Say ``text`` to screen readers without moving focus. */
  announce(text) {
    announcer.textContent = "";
    requestAnimationFrame(() => {
      announcer.textContent = text;
    });
  },

  /** The notice left for this page, once. */
  takeNotice() {
    const notice = this.notice;
    this.notice = null;
    return notice;
  },
};

let current = null;
let shown = 0;

async function show(path, { focus }) {
  const route = routes.find((candidate) => candidate.path === path);
  const ticket = ++shown;
  if (!route) {
    showMissing(path);
    return;
  }
  let page = null;
  let failure = null;
  try {
    page = await route.load();
  } catch (error) {
    failure = new NetworkError(error); // its module did not come: the server is out of reach
  }
  if (ticket !== shown) return; // another navigation started meanwhile
  current = route;
  document.title = `${route.title} · engage`;
  for (const link of nav.querySelectorAll("a")) {
    if (new URL(link.href).pathname === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = el("div", { class: "page" });
  clear(main).append(view);
  if (failure) view.append(el("h1", { text: route.title }));
  // A page builds its headings and forms before its first await, so focus can move now.
  const rendering = failure ? Promise.reject(failure) : page.render(view, app);
  if (focus && !view.contains(document.activeElement)) {
    const heading = view.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }
  try {
    await rendering;
  } catch (error) {
    if (error instanceof NetworkError) showFailure(view, error, { reload: error === failure });
    else if (!(error instanceof ApiError)) throw error;
    else if (error.status !== 401) showFailure(view, error);
  }
}

function showMissing(path) {
  document.title = "Not found · engage";
  clear(main).append(
    el(
      "div",
      { class: "page" },
      el("h1", { text: "Page not found" }),
      el("p", {}, `There is no page at ${path}. `, el("a", { href: "/", text: "Go to the dashboard" })),
    ),
  );
}

/**
 * Say why the page could not load where it is seen: under its heading, at the top;
 * its "Loading…" lines ([data-loading]) go, as nothing more will come.
 * ``reload``: trying again loads the whole document (the browser keeps a module's
 * failed import for the document's life).
 */
function showFailure(view, error, { reload = false } = {}) {
  for (const placeholder of view.querySelectorAll("[data-loading]")) placeholder.hidden = true;
  const alert = el(
    "p",
    { class: "notice is-error", role: "alert" },
    `This page could not load: ${error.message}. `,
    el("a", { href: location.pathname, text: "Try again", "data-reload": reload }),
  );
  const heading = view.querySelector("h1");
  if (heading) heading.after(alert);
  else view.prepend(alert);
  alert.scrollIntoView({ block: "nearest" });
}

onSignedOut(() => {
  if (!current?.session || location.pathname === "/signin") return;
  app.returnTo = location.pathname;
  // "Ended" only for a session this browser had: a first visit is simply asked to sign in.
  const ended = app.user || readStored(SIGNED_IN) === "1";
  app.signedOut(ended ? "Your session has ended. Sign in again to continue." : null);
  app.navigate("/signin", { replace: true });
});

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download") || link.hasAttribute("data-reload")) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin) return;
  if (url.hash && url.pathname === location.pathname) return; // an in-page link
  if (!routes.some((route) => route.path === url.pathname)) return;
  event.preventDefault();
  app.navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => show(location.pathname, { focus: true }));

show(location.pathname, { focus: false });
