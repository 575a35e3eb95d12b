// The one-time token of a link from a mail (after #token=), taken out of the
// address bar at once so it stays out of the history and any shared screenshot.
// This tab keeps it (sessionStorage) until it is used or refused, so reloading
// the page before its form is sent does not lose the link.

import { ApiError } from "./api.js";

const KEPT = "engage.linkToken";

const keptKey = () => `${KEPT}:${location.pathname}`;

export function takeLinkToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname);
  try {
    if (token) sessionStorage.setItem(keptKey(), token);
    return token ?? sessionStorage.getItem(keptKey());
  } catch {
    return token; // no storage: the token lives as long as the page
  }
}

/** ``send()``'s answer; this page's token is forgotten once the server took it or refused it (400). */
export async function spendingLinkToken(send) {
  try {
    const answer = await send();
    forget();
    return answer;
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) forget();
    throw error;
  }
}

function forget() {
  try {
    sessionStorage.removeItem(keptKey());
  } catch {
    // no storage, nothing kept
  }
}

export const BAD_LINK =
  "This link does not work: it was used already, it expired, or it was copied incompletely.";
