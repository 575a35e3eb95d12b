// The second factor: whether it is on and how many recovery codes are left; set up
// an authenticator app (a QR code or the key, then a code), the recovery codes
// shown once to copy or download; new codes, or off (the password and a code).

import { api } from "../api.js";
import { el, svg } from "../dom.js";
import { codeField, describeProblem, passwordField, showStatus, statusLine, submitForm, typedCode, usernameFor, whileBusy } from "../forms.js";
import { backToAccount, pageHead } from "../layout.js";

const WRONG = { 403: "The password or the code is not correct." };
const PATH_DATA = /^[MmHhVvZz0-9 .,-]+$/;
const SCALE = /^scale\([0-9.]+\)$/;

/** The server's QR code rebuilt from its path data alone: none of its markup reaches the page. */
function qrCode(text) {
  const root = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  const width = Number(root.getAttribute("width"));
  const height = Number(root.getAttribute("height"));
  if (root.localName !== "svg" || !(width > 0 && height > 0)) return null;
  const paths = [...root.getElementsByTagName("path")]
    .map((path) => ({ d: path.getAttribute("d") ?? "", transform: path.getAttribute("transform") }))
    .filter(({ d, transform }) => PATH_DATA.test(d) && (!transform || SCALE.test(transform)));
  if (!paths.length) return null;
  return svg(
    "svg",
    { class: "qr-code", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "QR code of the set-up link" },
    svg("rect", { class: "qr-light", width, height }),
    paths.map((path) => svg("path", { class: "qr-dark", ...path })),
  );
}

function card(title, ...children) {
  const heading = el("h2", { tabindex: "-1", text: title });
  return el("section", { class: "card" }, heading, ...children);
}

export async function render(view, app) {
  const state = el("p", { class: "lede", text: "Loading…", "data-loading": true });
  const note = el("p", { class: "form-status", role: "status", tabindex: "-1" });
  const body = el("div", { class: "stack" });
  view.append(
    pageHead("Second factor", backToAccount()),
    card("Status", state, note),
    body,
  );

  function said(text) {
    showStatus(note, text, "is-ok");
    note.focus();
  }

  function describe(enabled, left) {
    state.textContent = enabled
      ? `On: signing in asks for a code after the password. ${left === 1 ? "1 recovery code is" : `${left} recovery codes are`} left.`
      : "Off: the password alone signs you in.";
  }

  async function showState() {
    const { enabled, recovery_codes_left: left } = await api.get("/api/auth/mfa");
    describe(enabled, left);
    return enabled;
  }

  async function showAll() {
    body.replaceChildren(...((await showState()) ? whenOn() : whenOff()));
  }

  function passwordAndCodeForm(button, submit) {
    const code = codeField("A code from the app, or a recovery code.");
    return submitForm([usernameFor(app.user), passwordField(), code], button, {
      messages: WRONG,
      submit: (values) => submit({ ...values, code: typedCode(values.code) }),
    });
  }

  function whenOff() {
    const status = statusLine();
    const start = el("button", { type: "button", class: "button primary", text: "Set up" });
    const section = card(
      "Set up an authenticator app",
      el("p", { class: "hint", text: "An app on your phone shows a new 6-digit code every 30 seconds; signing in then asks for one after the password." }),
      status,
      start,
    );
    start.addEventListener("click", () =>
      whileBusy(start, status, async () => enrol(section, await api.post("/api/auth/mfa/totp"))),
    );
    return [section];
  }

  function enrol(section, setup) {
    const form = submitForm([codeField("The 6 digits the app shows now.", "numeric")], "Turn on", {
      fieldFor: { 403: "code" },
      submit: async (values) => {
        const { recovery_codes: codes } = await api.post("/api/auth/mfa/totp/confirm", { code: typedCode(values.code) });
        showCodes(codes, "The second factor is on.");
      },
    });
    const qr = qrCode(setup.qr_svg);
    const key = setup.secret.match(/.{1,4}/g).join(" ");
    section.replaceChildren(
      el("h2", { tabindex: "-1", text: "Set up an authenticator app" }),
      el(
        "ol",
        { class: "steps" },
        el("li", {}, qr ? "Scan this QR code with the app," : "Add an account to the app", qr ? el("div", {}, qr) : null),
        el("li", {}, qr ? "or enter this key by hand: " : "with this key: ", el("code", { class: "totp-secret", text: key })),
        el("li", {}, "Enter the code the app then shows.", form),
      ),
    );
    section.firstChild.focus();
  }

  function showCodes(codes, done) {
    const text = `engage recovery codes for ${app.user?.email ?? "your account"}\nEach signs in once, in place of a code from the app.\n\n${codes.join("\n")}\n`;
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const copyStatus = statusLine();
    const copy = el("button", { type: "button", class: "button", text: "Copy" });
    const finish = el("button", { type: "button", class: "button primary", text: "Done" });
    const section = card(
      "Your recovery codes",
      el("p", { class: "notice", role: "status", text: done }),
      el("p", { class: "hint", text: "Each code signs you in once in place of the app's code. They are shown only now: copy or download them and keep them somewhere safe." }),
      el("ol", { class: "recovery-codes" }, codes.map((code) => el("li", {}, el("code", { text: code })))),
      el(
        "div",
        { class: "actions" },
        copy,
        el("a", { class: "button", href: url, download: "engage-recovery-codes.txt", text: "Download" }),
      ),
      copyStatus,
      finish,
    );
    body.replaceChildren(section);
    section.firstChild.focus();
    describe(true, codes.length);
    note.textContent = "";
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(codes.join("\n"));
        showStatus(copyStatus, "The codes are copied.", "is-ok");
      } catch {
        showStatus(copyStatus, "Could not copy: select the codes, or download them.", "is-error");
      }
    });
    finish.addEventListener("click", async () => {
      try {
        await showAll();
        URL.revokeObjectURL(url);
        body.querySelector("h2").focus();
      } catch (error) {
        showStatus(copyStatus, describeProblem(error), "is-error");
      }
    });
  }

  function whenOn() {
    const renew = passwordAndCodeForm(
      el("button", { type: "submit", class: "button", text: "Make new recovery codes" }),
      async (values) => {
        const { recovery_codes: codes } = await api.post("/api/auth/mfa/recovery-codes", values);
        showCodes(codes, "New recovery codes are ready; the old ones no longer work.");
      },
    );
    const off = passwordAndCodeForm(
      el("button", { type: "submit", class: "button danger", text: "Turn off" }),
      async (values) => {
        await api.post("/api/auth/mfa/disable", values);
        await showAll();
        said("The second factor is off.");
      },
    );
    const offCard = card("Turn off the second factor", el("p", { class: "hint", text: "Signing in then needs only the password." }), off);
    offCard.classList.add("danger-zone");
    return [
      card("New recovery codes", el("p", { class: "hint", text: "Ten new codes; the old ones stop working." }), renew),
      offCard,
    ];
  }

  app.signedIn(app.user ?? (await api.get("/api/auth/me")));
  await showAll();
}
