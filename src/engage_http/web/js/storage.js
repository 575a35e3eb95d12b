// This browser's localStorage, for small facts shared by its tabs; a browser that
// refuses it (a private window, say) makes the app only less precise, never broken.

/** The value stored under ``key``, or null (none, or no storage). */
export function readStored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** Store ``value`` under ``key``, or forget the key for a null ``value``. */
export function writeStored(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // no storage: see above
  }
}
