// The page a reset link opens: choose a new password; every session then ends.

import { api } from "../api.js";
import { el } from "../dom.js";
import { passwordField, submitForm } from "../forms.js";
import { narrowCard } from "../layout.js";
import { BAD_LINK, spendingLinkToken, takeLinkToken } from "../link-token.js";

export async function render(view, app) {
  const token = takeLinkToken();
  const password = passwordField({
    label: "New password",
    name: "new_password",
    autocomplete: "new-password",
    hint: "8 to 256 characters.",
  });
  const form = submitForm([password], "Set the new password", {
    messages: { 400: BAD_LINK },
    submit: async (values) => {
      await spendingLinkToken(() =>
        api.post("/api/auth/password/reset", { token: token ?? "", new_password: values.new_password }),
      );
      app.signedOut("Your password is changed and every session has ended. Sign in with the new one.");
      app.navigate("/signin", { replace: true });
    },
  });
  view.append(
    narrowCard(
      "Choose a new password",
      el("p", { class: "hint", text: "Every session of your account ends: sign in again afterwards." }),
      form,
      el("p", { class: "aside" }, "Link expired? ", el("a", { href: "/forgot-password", text: "Ask for a new one" })),
    ),
  );
  password.input.focus();
}
