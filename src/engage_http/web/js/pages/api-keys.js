// API keys: for devices and scripts that record or read your metrics without
// your password. A new key is shown once (with a copy button and a curl line
// that uses it); the list shows each key's name, scopes and last use; revoke
// one and it is refused at once.

import { api } from "../api.js";
import { el, nextId } from "../dom.js";
import { field, showStatus, statusLine, submitForm, whileBusy } from "../forms.js";
import { backToAccount, pageHead } from "../layout.js";
import { formatMoment } from "../format.js";

const SCOPES = [
  { id: "metrics:write", label: "Record metrics" },
  { id: "metrics:read", label: "Read metrics (the list, the summary and the live stream)" },
];

const moment = (iso) => (iso ? el("time", { datetime: iso, text: formatMoment(new Date(iso)) }) : "Never");
const fact = (term, value) => el("div", {}, el("dt", { text: term }), el("dd", {}, value));
const counted = (count) => (count === 0 ? "No API keys yet." : count === 1 ? "1 key." : `${count} keys.`);

function scopesField() {
  const id = nextId("scopes");
  const error = el("p", { id: `${id}-error`, class: "field-error", hidden: true });
  const boxes = SCOPES.map((scope, index) => {
    const boxId = `${id}-${index}`;
    const box = el("input", { type: "checkbox", id: boxId, value: scope.id });
    if (index === 0) box.checked = true;
    return { box, row: el("div", { class: "check" }, box, el("label", { for: boxId, text: scope.label })) };
  });
  const group = el(
    "fieldset",
    { class: "field", tabindex: "-1", "aria-describedby": error.id },
    el("legend", { text: "What it may do" }),
    ...boxes.map((b) => b.row),
    error,
  );
  const chosen = () => boxes.filter((b) => b.box.checked).map((b) => b.box.value);
  return { name: "scopes", label: "Scopes", input: group, error, wrapper: group, chosen };
}

function curlFor(key, scopes) {
  const origin = location.origin;
  if (scopes.includes("metrics:write")) {
    return (
      `curl -X POST ${origin}/api/dashboard/metrics \\\n` +
      `  -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" \\\n` +
      `  -d '{"metric_type": "page_view", "metric_value": 1}'`
    );
  }
  return `curl -N ${origin}/api/dashboard/stream -H "Authorization: Bearer ${key}"`;
}

export async function render(view, app) {
  const name = field({ label: "Name", name: "name", hint: "What the key is for, such as the device it lives on.", maxlength: "100" });
  const scopes = scopesField();
  const expires = field({
    label: "Expires (optional)",
    name: "expires_at",
    type: "datetime-local",
    hint: "Leave empty for a key that works until you revoke it.",
  });
  const createForm = submitForm([name, scopes, expires], "Create key", {
    submit: async (values) => {
      const body = { name: values.name, scopes: scopes.chosen() };
      if (values.expires_at) body.expires_at = new Date(values.expires_at).toISOString();
      const created = await api.post("/api/keys", body);
      name.input.value = "";
      expires.input.value = "";
      showNewKey(created);
      await loadKeys();
      return `Key ${created.name} created.`;
    },
  });
  const shown = el("section", { class: "card new-key", "aria-labelledby": "new-key-title", hidden: true });
  const listStatus = statusLine();
  const count = el("p", { class: "list-status", tabindex: "-1", text: "Loading…", "data-loading": true });
  const list = el("ul", { class: "device-list key-list", "aria-labelledby": "keys-title" });

  view.append(
    pageHead("API keys", backToAccount()),
    el(
      "p",
      { class: "lede" },
      "A key lets a device or a script record or read your metrics, and nothing else: it cannot sign in or change your account.",
    ),
    shown,
    el(
      "section",
      { class: "card", "aria-labelledby": "create-key-title" },
      el("h2", { id: "create-key-title", text: "Create a key" }),
      createForm,
    ),
    el(
      "section",
      { class: "card", "aria-labelledby": "keys-title" },
      el("h2", { id: "keys-title", text: "Your keys" }),
      count,
      listStatus,
      list,
    ),
  );

  function showNewKey(created) {
    const copyStatus = statusLine();
    const copy = el("button", { type: "button", class: "button", text: "Copy the key" });
    const text = el("code", { class: "secret", text: created.key });
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        showStatus(copyStatus, "Copied.", "is-ok");
      } catch {
        showStatus(copyStatus, "Could not copy: select the key and copy it yourself.", "is-error");
      }
    });
    shown.replaceChildren(
      el("h2", { id: "new-key-title", tabindex: "-1", text: `Your new key: ${created.name}` }),
      el("p", { class: "hint", text: "Copy it now: it is shown this once, and engage keeps only a hash of it." }),
      el("p", {}, text),
      el("div", { class: "actions" }, copy),
      copyStatus,
      el("p", { class: "hint", text: "Try it:" }),
      el("pre", { class: "example" }, el("code", { text: curlFor(created.key, created.scopes) })),
    );
    shown.hidden = false;
    shown.querySelector("h2").focus();
  }

  function row(key) {
    const titleId = nextId("key");
    const revoke = el("button", { type: "button", class: "button", text: "Revoke", "aria-describedby": titleId });
    const item = el(
      "li",
      { class: "device", "data-id": key.id },
      el("h3", { id: titleId, text: key.name }),
      el(
        "dl",
        { class: "facts" },
        fact("Key", el("code", { text: `${key.prefix}_…` })),
        fact("May", key.scopes.map((s) => SCOPES.find((one) => one.id === s)?.label ?? s).join("; ")),
        fact("Created", moment(key.created_at)),
        fact("Expires", key.expires_at ? moment(key.expires_at) : "Never"),
        fact("Last used", moment(key.last_used_at)),
      ),
      el("div", { class: "actions" }, revoke),
    );
    revoke.addEventListener("click", () =>
      whileBusy(revoke, listStatus, async () => {
        const revoking = await api.deleteIfThere(`/api/keys/${encodeURIComponent(key.id)}`);
        item.remove();
        showStatus(listStatus, revoking ? `Key revoked: ${key.name} no longer works.` : `${key.name} was revoked already.`, "is-ok");
        count.textContent = counted(list.children.length);
        count.focus();
      }),
    );
    return item;
  }

  async function loadKeys() {
    const { items } = await api.get("/api/keys");
    list.replaceChildren(...items.map(row));
    count.textContent = counted(items.length);
  }

  const [me] = await Promise.all([app.user ?? api.get("/api/auth/me"), loadKeys()]);
  app.signedIn(me);
}
