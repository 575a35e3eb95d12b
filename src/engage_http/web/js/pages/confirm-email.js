// The page an email change's link opens: the new address takes over at once.

import { api, ApiError } from "../api.js";
import { el } from "../dom.js";
import { describeProblem } from "../forms.js";
import { narrowCard } from "../layout.js";
import { BAD_LINK, spendingLinkToken, takeLinkToken } from "../link-token.js";

export async function render(view, app) {
  const token = takeLinkToken();
  const status = el("p", { role: "status", class: "notice", text: "Confirming your new address…" });
  const next = el("p", { class: "aside" });
  view.append(
    narrowCard("Confirm your new email address", status, next),
  );
  try {
    if (!token) throw new ApiError(400, { detail: BAD_LINK });
    await spendingLinkToken(() => api.post("/api/auth/email/confirm", { token }));
    status.textContent = "Your account has its new email address. Sign in with it from now on.";
    app.user = null; // its address changed: ask again when needed
    next.append(el("a", { href: "/account", text: "Go to the account" }));
  } catch (error) {
    status.classList.add("is-error");
    status.textContent = describeProblem(error, { 400: BAD_LINK, 409: "Another account took this address meanwhile." });
  }
}
