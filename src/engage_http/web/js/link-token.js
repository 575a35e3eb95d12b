// The one-time token of a link from a mail (after #token=), taken out of the
// address bar at once so it stays out of the history and any shared screenshot.

export function takeLinkToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname);
  return token;
}

export const BAD_LINK =
  "This link does not work: it was used already, it expired, or it was copied incompletely.";
