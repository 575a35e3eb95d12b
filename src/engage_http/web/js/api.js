// The JSON API over fetch(): cookie auth, the CSRF header, one refresh on an
// expired access token, and problem details turned into ApiError.

import { readStored, writeStored } from "./storage.js";

const CSRF_COOKIE = "csrftoken";
const CSRF_HEADER = "X-CSRFToken";
// Credentials, not the access cookie, authenticate these: a 401 is the answer itself
// (for the second factor's code: that code is wrong, or the login's challenge is over).
const ENTRY_POINTS = new Set([
  "/api/auth/signup",
  "/api/auth/login",
  "/api/auth/token",
  "/api/auth/mfa/verify",
  "/api/auth/refresh",
]);
const REFRESHED_AT = "engage.refreshed_at";

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    // Seconds until a 429 or 503 may be retried, when the server said.
    this.retryAfter = retryAfter;
  }

  /** What kind of problem it is: the last part of its type ("challenge-ended"). */
  get kind() {
    return String(this.problem.type ?? "").split(":").pop();
  }

  /** The {field, message} list of a validation problem. */
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

/** No answer from engage that could be read: no connection, or a body cut short. */
export class NetworkError extends Error {
  constructor(cause) {
    super("Cannot reach engage", { cause });
    this.name = "NetworkError";
  }
}

let whenSignedOut = () => {};

/** What to do when the session is gone for good (the refresh failed too). */
export function onSignedOut(callback) {
  whenSignedOut = callback;
}

function csrfToken() {
  for (const pair of document.cookie.split(";")) {
    const [name, ...rest] = pair.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function urlOf(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

async function send(method, url, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") {
    const token = csrfToken();
    if (token) headers[CSRF_HEADER] = token;
  }
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (error) {
    throw new NetworkError(error); // fetch() rejects only when no answer came
  }
}

function readRefreshedAt() {
  return Number(readStored(REFRESHED_AT)) || 0;
}

function noteRefreshed() {
  writeStored(REFRESHED_AT, String(Date.now())); // without storage, tabs refresh on their own
}

// Tabs share the cookies: one refresh at a time, across tabs (Web Locks), because
// a refresh token sent twice ends the whole session family.
function exclusively(task) {
  if (navigator.locks) return navigator.locks.request("engage.refresh", task);
  return task();
}

let refreshing = null;

/** Refresh the session once for every request that failed before ``failedAt``. */
function refreshSession(failedAt) {
  refreshing ??= exclusively(async () => {
    if (readRefreshedAt() > failedAt) return true; // another tab did it meanwhile
    const response = await send("POST", "/api/auth/refresh");
    if (response.ok) noteRefreshed();
    return response.ok;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  let body = null;
  if (type.includes("json")) {
    try {
      body = await response.json();
    } catch (error) {
      if (response.ok) throw new NetworkError(error);
      // an error page that is not the API's: its status says enough
    }
  }
  if (response.ok) return body;
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  throw new ApiError(response.status, body || { title: response.statusText }, retryAfter);
}

/** Call the API; resolves to the JSON body (null for 204) or rejects with ApiError. */
export async function request(method, path, { body, query } = {}) {
  const url = urlOf(path, query);
  const sentAt = Date.now();
  let response = await send(method, url, body);
  if (response.status === 401 && !ENTRY_POINTS.has(path)) {
    if (await refreshSession(sentAt)) response = await send(method, url, body);
    if (response.status === 401) whenSignedOut();
  }
  return parse(response);
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body, query) => request("POST", path, { body, query }),
  delete: (path, body) => request("DELETE", path, { body }),
  /** DELETE ``path``: true, or false when it was gone already (a 404). */
  deleteIfThere: async (path) => {
    try {
      await request("DELETE", path);
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return false;
      throw error;
    }
  },
};
