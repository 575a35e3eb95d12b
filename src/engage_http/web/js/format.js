// Numbers, moments and buckets in the browser's locale and time zone.

/** The browser's IANA time zone, the one summaries are bucketed in. */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// Every digit of a metric's value: formatted from its shortest decimal text (1e-7 is
// 0.0000001, not 0; 0.1 stays 0.1), which Intl reads as an exact decimal.
const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 });
const shortNumbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const compactNumbers = new Intl.NumberFormat(undefined, {
  notation: "compact",
  maximumFractionDigits: 1,
});
const moments = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const days = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
});
const weekdays = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

export const formatNumber = (value) => numbers.format(String(value));
export const formatShortNumber = (value) => shortNumbers.format(value);
export const formatCompactNumber = (value) => compactNumbers.format(value);
export const formatMoment = (date) => moments.format(date);
export const formatDate = (date) => dates.format(date);
export const formatClock = (date) => clock.format(date);

const HOUR = 3600 * 1000;

/** The start of the bucket (local hour, day, or ISO week from Monday) holding ``date``. */
export function bucketStart(date, bucket) {
  const start = new Date(date);
  start.setMinutes(0, 0, 0);
  if (bucket === "hour") return start;
  start.setHours(0);
  if (bucket === "week") start.setDate(start.getDate() - ((start.getDay() + 6) % 7));
  return start;
}

/** ``count`` buckets after ``start`` (calendar days, so DST days stay days). */
export function addBuckets(start, bucket, count = 1) {
  if (bucket === "hour") return new Date(start.getTime() + count * HOUR);
  const next = new Date(start);
  next.setDate(next.getDate() + count * (bucket === "week" ? 7 : 1));
  return next;
}

/** The first bucket start at or after ``date``. */
export function bucketCeil(date, bucket) {
  const start = bucketStart(date, bucket);
  return start < date ? addBuckets(start, bucket) : start;
}

/** A bucket's label for a tooltip: "Tue, 3 Mar, 14:00–15:00", "Week of 2 Mar 2026". */
export function formatBucket(start, bucket) {
  if (bucket === "hour") {
    return `${weekdays.format(start)}, ${formatClock(start)}–${formatClock(addBuckets(start, "hour"))}`;
  }
  if (bucket === "week") return `Week of ${formatDate(start)}`;
  return days.format(start);
}

/** "in 42 seconds", "in 12 minutes": how long until a retry is allowed. */
export function formatWait(seconds) {
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "always" });
  if (seconds < 90) return relative.format(Math.max(1, Math.ceil(seconds)), "second");
  if (seconds < 90 * 60) return relative.format(Math.ceil(seconds / 60), "minute");
  return relative.format(Math.ceil(seconds / 3600), "hour");
}
