// Change the account's address: a confirmation link goes to the new one, a notice to the old.

import { api } from "../api.js";
import { el } from "../dom.js";
import { field, handleSubmit, statusLine } from "../forms.js";

export async function render(view, app) {
  const current = el("strong", { text: app.user?.email ?? "…" });
  const email = field({
    label: "New email",
    name: "new_email",
    type: "email",
    autocomplete: "email",
    required: true,
    spellcheck: "false",
  });
  const password = field({
    label: "Password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    hint: "Your password, to confirm.",
  });
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    email.wrapper,
    password.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Send a confirmation link" }),
  );
  view.append(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Change email address" }),
      el("p", { class: "hint" }, "Now: ", current, ". The new address takes over once you open the link we mail to it."),
      form,
      el("p", { class: "aside" }, el("a", { href: "/account", text: "Back to the account" })),
    ),
  );
  handleSubmit(form, {
    fields: [email, password],
    status,
    fieldFor: { 403: "password", 409: "new_email" },
    messages: { 403: "The password is not correct.", 409: "Another account uses this address." },
    submit: async (values) => {
      await api.post("/api/auth/email", values);
      password.input.value = "";
      return `A confirmation link is on its way to ${values.new_email.trim()}. It works for 24 hours.`;
    },
  });
  const me = await api.get("/api/auth/me");
  app.signedIn(me);
  current.textContent = me.email;
}
