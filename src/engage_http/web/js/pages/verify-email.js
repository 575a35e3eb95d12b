// The page a verification link opens: it verifies the address at once.

import { api, ApiError } from "../api.js";
import { el } from "../dom.js";
import { describeProblem, OFFLINE } from "../forms.js";
import { BAD_LINK, takeLinkToken } from "../link-token.js";

export async function render(view, app) {
  const token = takeLinkToken();
  const status = el("p", { role: "status", class: "notice", text: "Verifying your address…" });
  const next = el("p", { class: "aside" });
  view.append(
    el("section", { class: "card narrow" }, el("h1", { text: "Verify your email address" }), status, next),
  );
  try {
    if (!token) throw new ApiError(400, { detail: BAD_LINK });
    await api.post("/api/auth/verify", { token });
    status.textContent = "Your email address is verified. Thank you!";
    if (app.user) app.user.email_verified = true;
    next.append(el("a", { href: app.user ? "/" : "/signin", text: app.user ? "Go to the dashboard" : "Sign in" }));
  } catch (error) {
    status.classList.add("is-error");
    if (!(error instanceof ApiError)) status.textContent = OFFLINE;
    else status.textContent = error.status === 400 ? BAD_LINK : describeProblem(error);
    next.append("Signed in? The dashboard can send a new link. ", el("a", { href: "/", text: "Dashboard" }));
  }
}
