// The page a verification link opens: it verifies the address at once.

import { api, ApiError } from "../api.js";
import { el } from "../dom.js";
import { describeProblem } from "../forms.js";
import { narrowCard } from "../layout.js";
import { BAD_LINK, spendingLinkToken, takeLinkToken } from "../link-token.js";

export async function render(view, app) {
  const token = takeLinkToken();
  const status = el("p", { role: "status", class: "notice", text: "Verifying your address…" });
  const next = el("p", { class: "aside" });
  view.append(
    narrowCard("Verify your email address", status, next),
  );
  try {
    if (!token) throw new ApiError(400, { detail: BAD_LINK });
    await spendingLinkToken(() => api.post("/api/auth/verify", { token }));
    status.textContent = "Your email address is verified. Thank you!";
    if (app.user) app.user.email_verified = true;
    next.append(el("a", { href: app.user ? "/" : "/signin", text: app.user ? "Go to the dashboard" : "Sign in" }));
  } catch (error) {
    status.classList.add("is-error");
    status.textContent = describeProblem(error, { 400: BAD_LINK });
    next.append("Signed in? The dashboard can send a new link. ", el("a", { href: "/", text: "Dashboard" }));
  }
}
