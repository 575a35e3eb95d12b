// The live stream (GET /api/dashboard/stream): new metrics pushed as they are
// recorded, by any device or script. EventSource reconnects by itself and
// resumes with Last-Event-ID; when it gives up (its access cookie expired) or
// the server ends the stream, this opens it again from the last id seen, once
// the session is known to be live (api.get refreshes it or signs out).

import { api } from "./api.js";

const RETRY_MS = 2000;

/**
 * Follow the stream while ``isActive()``: ``onMetric(metric)`` for each new one,
 * ``onBackfill(count)`` when many came at once. Returns a function that stops it.
 */
export function followMetrics({ onMetric, onBackfill, isActive }) {
  let source = null;
  let lastId = null;
  let stopped = false;
  let retry = null;

  function stop() {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  }

  function noteId(event) {
    if (event.lastEventId) lastId = event.lastEventId;
  }

  function reopenLater() {
    source?.close();
    if (stopped || !isActive()) return stop();
    retry = setTimeout(async () => {
      try {
        await api.get("/api/auth/me"); // refreshes the access cookie, or signs out
      } catch {
        // offline or signed out: try again later, or the page is gone
      }
      open();
    }, RETRY_MS);
  }

  function open() {
    if (stopped || !isActive()) return stop();
    const url = lastId ? `/api/dashboard/stream?after=${encodeURIComponent(lastId)}` : "/api/dashboard/stream";
    source = new EventSource(url);
    // The opening event: where the stream starts, before any metric.
    source.addEventListener("position", noteId);
    source.addEventListener("metric", (event) => {
      noteId(event);
      if (!isActive()) return stop();
      onMetric(JSON.parse(event.data));
    });
    source.addEventListener("backfill", (event) => {
      noteId(event);
      if (!isActive()) return stop();
      onBackfill(JSON.parse(event.data).count);
    });
    source.addEventListener("end", reopenLater);
    source.onerror = () => {
      // CONNECTING: EventSource retries by itself. CLOSED: it gave up (a 401, a 429).
      if (!isActive()) stop();
      else if (source.readyState === EventSource.CLOSED) reopenLater();
    };
  }

  open();
  return stop;
}
