// Change the account's address: a confirmation link goes to the new one, a notice to the old.

import { api } from "../api.js";
import { el } from "../dom.js";
import { emailField, passwordField, submitForm } from "../forms.js";
import { backToAccount, narrowCard } from "../layout.js";

export async function render(view, app) {
  const current = el("strong", { text: app.user?.email ?? "…" });
  const email = emailField({ label: "New email", name: "new_email", autocomplete: "email" });
  const password = passwordField({ hint: "Your password, to confirm." });
  const form = submitForm([email, password], "Send a confirmation link", {
    fieldFor: { 403: "password", 409: "new_email" },
    messages: { 403: "The password is not correct.", 409: "Another account uses this address." },
    submit: async (values) => {
      await api.post("/api/auth/email", values);
      password.input.value = "";
      return `A confirmation link is on its way to ${values.new_email.trim()}. It works for 24 hours.`;
    },
  });
  view.append(
    narrowCard(
      "Change email address",
      el("p", { class: "hint" }, "Now: ", current, ". The new address takes over once you open the link we mail to it."),
      form,
      backToAccount(),
    ),
  );
  const me = await api.get("/api/auth/me");
  app.signedIn(me);
  current.textContent = me.email;
}
