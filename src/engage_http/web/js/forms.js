// Forms: labelled fields, the API's messages next to the field they concern,
// and one announced status line per form.

import { ApiError } from "./api.js";
import { el, nextId } from "./dom.js";
import { formatClock, formatWait } from "./format.js";

/** A labelled input with its hint and its error line; ``input`` is the control. */
export function field({ label, name, type = "text", hint, control, ...attributes }) {
  const id = nextId(name);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const input =
    control ??
    el("input", { id, name, type, ...attributes });
  input.id = id;
  input.name = name;
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const error = el("p", { id: errorId, class: "field-error", hidden: true });
  const wrapper = el(
    "div",
    { class: "field" },
    el("label", { for: id, text: label }),
    hint ? el("p", { id: hintId, class: "hint", text: hint }) : null,
    input,
    error,
  );
  return { name, label, input, error, wrapper };
}

/** An email address to sign in with; ``overrides`` for another label, name or autocomplete. */
export function emailField(overrides = {}) {
  return field({
    label: "Email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
    ...overrides,
  });
}

/** A password field; ``autocomplete: "new-password"`` for one being chosen. */
export function passwordField({ label = "Password", name = "password", autocomplete = "current-password", hint } = {}) {
  return field({ label, name, type: "password", autocomplete, required: true, hint });
}

/** A one-time code: from an authenticator app (``inputmode: "numeric"``), or a recovery code too. */
export function codeField(hint, inputmode = "text") {
  return field({ label: "Code", name: "code", hint, autocomplete: "one-time-code", inputmode, required: true, spellcheck: "false" });
}

/** A code as typed: apps show "123 456", and a recovery code may be copied with spaces; none is part of it. */
export function typedCode(text) {
  return text.replace(/\s+/g, "");
}

// Tells password managers whose password a form holds; never sent.
export function usernameFor(user) {
  return el("input", { type: "text", name: "username", autocomplete: "username", value: user?.email ?? "", hidden: true });
}

function setFieldError(entry, message) {
  entry.error.textContent = message;
  entry.error.hidden = !message;
  if (message) entry.input.setAttribute("aria-invalid", "true");
  else entry.input.removeAttribute("aria-invalid");
}

export const OFFLINE = "Cannot reach engage. Check the connection and try again.";

// "must be 8 to 256 characters long" reads as a sentence after the field's name.
const PREDICATE = /^(is|are|must|may|should|has|have|cannot|can|does)\b/;

function sentence(label, message) {
  const text = String(message).trim();
  if (!label) return text.charAt(0).toUpperCase() + text.slice(1);
  return PREDICATE.test(text) ? `${label} ${text}` : `${label}: ${text}`;
}

/** A status line read out by screen readers as soon as it changes. */
export function statusLine() {
  return el("p", { class: "form-status", role: "status", "aria-live": "polite" });
}

/**
 * A form of ``parts`` (field() results, or nodes such as usernameFor()'s), its
 * status line and its submit button (its text, or the button itself), wired by
 * handleSubmit with ``wiring`` (submit, fieldFor, messages).
 */
export function submitForm(parts, button, wiring) {
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    parts.map((part) => (part instanceof Node ? part : part.wrapper)),
    status,
    typeof button === "string" ? el("button", { type: "submit", class: "button primary", text: button }) : button,
  );
  handleSubmit(form, { fields: parts.filter((part) => !(part instanceof Node)), status, ...wiring });
  return form;
}

/**
 * Wire ``form``: on submit, clear old messages, run ``submit(values)``, and show
 * what went wrong. ``fields`` are field() results; ``fieldFor`` maps a status
 * without a field list (403 wrong password, 409 email taken) to a field name;
 * ``messages`` overrides the text shown for a status.
 */
export function handleSubmit(form, { fields, status, submit, fieldFor = {}, messages = {} }) {
  const byName = new Map(fields.map((entry) => [entry.name, entry]));
  const button = form.querySelector("button[type=submit]");
  form.noValidate = true; // the API's rules and messages are the ones shown
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    for (const entry of fields) setFieldError(entry, "");
    showStatus(status, "");
    const values = Object.fromEntries(fields.map((entry) => [entry.name, entry.input.value]));
    form.setAttribute("aria-busy", "true");
    const release = button ? disableWhileBusy(button) : () => {};
    try {
      const done = await submit(values);
      if (done) showStatus(status, done, "is-ok");
    } catch (error) {
      if (!(error instanceof ApiError)) {
        showStatus(status, describeProblem(error), "is-error");
        return;
      }
      const invalid = showProblem(error, { byName, status, fieldFor, messages });
      invalid?.input.focus();
    } finally {
      form.removeAttribute("aria-busy");
      release();
    }
  });
}

/**
 * Disable ``button`` while its request runs. The function returned enables it again
 * and, if disabling took the keyboard focus from it (to the page's body), gives it back:
 * a keyboard or screen-reader user stays where they were.
 */
export function disableWhileBusy(button) {
  const focused = document.activeElement === button;
  button.disabled = true;
  return () => {
    button.disabled = false;
    const lost = document.activeElement === null || document.activeElement === document.body;
    if (focused && lost && button.isConnected) button.focus();
  };
}

export function showStatus(status, text, kind) {
  status.textContent = text;
  status.classList.remove("is-error", "is-ok", "visually-hidden");
  if (kind) status.classList.add(kind);
}

/** The words for a failed request: no connection, the problem's detail, or when to come back after a 429. */
export function describeProblem(error, messages = {}) {
  if (!(error instanceof ApiError)) return OFFLINE;
  if (messages[error.status]) return messages[error.status];
  if (error.status === 429) {
    const wait = error.retryAfter ?? 60;
    const at = formatClock(new Date(Date.now() + wait * 1000));
    return `Too many attempts. Try again ${formatWait(wait)} (at ${at}).`;
  }
  if (error.status === 503) return "The service is unavailable for a moment. Try again shortly.";
  return sentence("", error.problem.detail || error.problem.title || "Something went wrong.");
}

/** Run ``task`` with ``button`` disabled; a failure is said in ``status``. */
export async function whileBusy(button, status, task) {
  const release = disableWhileBusy(button);
  try {
    await task();
  } catch (error) {
    showStatus(status, describeProblem(error), "is-error");
  } finally {
    release();
  }
}

function showProblem(error, { byName, status, fieldFor, messages }) {
  let first = null;
  const unplaced = [];
  for (const { field: name, message } of error.fieldErrors) {
    const entry = byName.get(name);
    if (entry) {
      setFieldError(entry, sentence(entry.label, message));
      first ??= entry;
    } else {
      unplaced.push(sentence(name, message));
    }
  }
  const text = describeProblem(error, messages);
  const named = byName.get(fieldFor[error.status]);
  if (named && !error.fieldErrors.length) {
    setFieldError(named, text);
    showStatus(status, text, "is-error");
    status.classList.add("visually-hidden"); // seen once, at the field; still read out
    return named;
  }
  const lines = error.fieldErrors.length
    ? [first ? "Please correct the marked fields." : "", ...unplaced]
    : [text];
  showStatus(status, lines.filter(Boolean).join(" "), "is-error");
  return first;
}
