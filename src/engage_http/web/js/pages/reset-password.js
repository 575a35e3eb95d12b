// The page a reset link opens: choose a new password; every session then ends.

import { api } from "../api.js";
import { el } from "../dom.js";
import { field, handleSubmit, statusLine } from "../forms.js";
import { BAD_LINK, takeLinkToken } from "../link-token.js";

export async function render(view, app) {
  const token = takeLinkToken();
  const password = field({
    label: "New password",
    name: "new_password",
    type: "password",
    autocomplete: "new-password",
    required: true,
    hint: "8 to 256 characters.",
  });
  const status = statusLine();
  const form = el(
    "form",
    { class: "stack", method: "post" },
    password.wrapper,
    status,
    el("button", { type: "submit", class: "button primary", text: "Set the new password" }),
  );
  view.append(
    el(
      "section",
      { class: "card narrow" },
      el("h1", { text: "Choose a new password" }),
      el("p", { class: "hint", text: "Every session of your account ends: sign in again afterwards." }),
      form,
      el("p", { class: "aside" }, "Link expired? ", el("a", { href: "/forgot-password", text: "Ask for a new one" })),
    ),
  );
  handleSubmit(form, {
    fields: [password],
    status,
    messages: { 400: BAD_LINK },
    submit: async (values) => {
      await api.post("/api/auth/password/reset", { token: token ?? "", new_password: values.new_password });
      app.signedOut("Your password is changed and every session has ended. Sign in with the new one.");
      app.navigate("/signin", { replace: true });
    },
  });
  password.input.focus();
}
