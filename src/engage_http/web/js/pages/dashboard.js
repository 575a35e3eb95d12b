// The dashboard: the summary chart and totals for a range, bucket and metric
// type; the metrics list, newest first, a page at a time; a form to record one.
// Its first render makes at most three API calls: summary, first page, and
// who is signed in (skipped right after sign-in).

import { api, ApiError } from "../api.js";
import { createChart } from "../chart.js";
import { el, nextId } from "../dom.js";
import { describeProblem, disableWhileBusy, field, submitForm } from "../forms.js";
import { pageHead } from "../layout.js";
import { followMetrics } from "../live.js";
import { verificationBanner } from "../verify-banner.js";
import {
  addBuckets,
  bucketStart,
  formatMoment,
  formatNumber,
  formatShortNumber,
  timeZone,
} from "../format.js";

const PAGE_SIZE = 25;
const HOUR = 3600 * 1000;
const RANGES = [
  { id: "24h", label: "24 h", words: "the last 24 hours", bucket: "hour", since: (now) => new Date(now - 24 * HOUR) },
  { id: "7d", label: "7 d", words: "the last 7 days", bucket: "day", since: (now) => new Date(now - 7 * 24 * HOUR) },
  { id: "30d", label: "30 d", words: "the last 30 days", bucket: "day", since: (now) => new Date(now - 30 * 24 * HOUR) },
  {
    id: "12m",
    label: "12 months",
    words: "the last 12 months",
    bucket: "week",
    since: (now) => {
      const start = new Date(now);
      start.setFullYear(start.getFullYear() - 1);
      return start;
    },
  },
];
const BUCKETS = [
  { id: "hour", label: "Hour" },
  { id: "day", label: "Day" },
  { id: "week", label: "Week" },
];
const MEASURES = [
  { id: "count", label: "Count" },
  { id: "sum", label: "Sum" },
  { id: "avg", label: "Average" },
  { id: "min", label: "Minimum" },
  { id: "max", label: "Maximum" },
];
// More than this many hourly bars say nothing a daily chart would not.
const MAX_HOURLY_DAYS = 31;

/** One point per bucket start over the chosen series: counts and sums add up. */
export function combine(series, type) {
  const merged = new Map();
  for (const one of series) {
    if (type && one.metric_type !== type) continue;
    for (const point of one.points) {
      const start = Date.parse(point.start);
      const into = merged.get(start);
      if (!into) {
        merged.set(start, { ...point, start: new Date(start) });
      } else {
        into.count += point.count;
        into.sum += point.sum;
        into.min = Math.min(into.min, point.min);
        into.max = Math.max(into.max, point.max);
      }
    }
  }
  const points = [...merged.values()].sort((a, b) => a.start - b.start);
  for (const point of points) point.avg = point.sum / point.count;
  return points;
}

/** Count, sum, avg, min and max over all the points. */
export function totals(points) {
  if (!points.length) return null;
  const total = { count: 0, sum: 0, min: Infinity, max: -Infinity };
  for (const point of points) {
    total.count += point.count;
    total.sum += point.sum;
    total.min = Math.min(total.min, point.min);
    total.max = Math.max(total.max, point.max);
  }
  return { ...total, avg: total.sum / total.count };
}

function select(entry, options, chosen) {
  entry.input.replaceChildren(
    ...options.map((option) =>
      el("option", { value: option.id, selected: option.id === chosen, text: option.label }),
    ),
  );
  entry.input.value = chosen;
}

function code(text) {
  return el("code", { text });
}

function emptyState(email, rangeWords) {
  const batch =
    `curl -X POST ${location.origin}/api/dashboard/metrics/batch \\\n` +
    "  -H 'Content-Type: application/json' \\\n" +
    "  -H 'Authorization: Bearer <token>' \\\n" +
    '  -d \'{"items": [{"metric_type": "page_view", "metric_value": 1}]}\'';
  return el(
    "div",
    { class: "empty-state" },
    el("h3", { text: `Nothing recorded in ${rangeWords}` }),
    el("p", { text: "Three ways to get metrics in:" }),
    el(
      "ol",
      {},
      el("li", {}, el("strong", { text: "Record one" }), " with the form on this page."),
      el(
        "li",
        {},
        el("strong", { text: "Send up to 1000 at once" }),
        " to the batch API (a bearer token comes from ",
        code("POST /api/auth/token"),
        "; the reference is at ",
        el("a", { href: "/schema", text: "/schema" }),
        "):",
        el("pre", {}, code(batch)),
      ),
      el(
        "li",
        {},
        el("strong", { text: "Load a file" }),
        " of rows ",
        code("metric_type,metric_value,recorded_at"),
        " (CSV or JSON Lines) on the server:",
        el("pre", {}, code(`engage metrics backfill metrics.csv --user ${email || "you@example.com"}`)),
      ),
    ),
  );
}

export async function render(view, app) {
  const state = {
    range: "30d",
    bucket: "day",
    type: "",
    measure: "count",
  };
  // What is drawn: the summary as loaded (its series, range, bucket and start), and
  // the list as loaded (its query and next cursor). A newer load replaces each.
  let summaryShown = { series: [], range: state.range, bucket: state.bucket, since: new Date() };
  let listShown = { query: null, type: "", range: state.range, cursor: null };
  let summaryLoads = 0;
  let listLoads = 0;

  // --- the skeleton, built before any request ------------------------------------
  const who = el("p", { class: "lede" });
  const notice = el("p", { class: "notice is-error", role: "alert", hidden: true });
  const rangeName = nextId("range");
  const ranges = el(
    "fieldset",
    { class: "segmented" },
    el("legend", { text: "Range" }),
    RANGES.map((range) => {
      const id = `${rangeName}-${range.id}`;
      return el(
        "span",
        { class: "segment" },
        el("input", { type: "radio", id, name: rangeName, value: range.id, checked: range.id === state.range }),
        el("label", { for: id, text: range.label }),
      );
    }),
  );
  const bucket = field({ label: "Bucket", name: "bucket", control: el("select") });
  const type = field({ label: "Metric type", name: "metric_type", control: el("select") });
  const measure = field({ label: "Show", name: "measure", control: el("select") });
  select(measure, MEASURES, state.measure);
  const controls = el(
    "form",
    { class: "controls", "aria-label": "Chart and list options" },
    ranges,
    bucket.wrapper,
    type.wrapper,
    measure.wrapper,
  );
  controls.addEventListener("submit", (event) => event.preventDefault());

  const stats = el("dl", { class: "stats" });
  const statsCaption = el("p", { class: "stats-caption" });
  const chartHeading = el("h2", { id: nextId("chart-title") });
  const chartBox = el("div");
  const chartEmpty = el("div", { hidden: true });
  const chart = createChart(chartBox);

  const rows = el("tbody");
  const table = el(
    "table",
    { class: "metrics-table" },
    el("caption", { class: "visually-hidden", text: "Metrics, newest first" }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", text: "Recorded" }),
        el("th", { scope: "col", text: "Type" }),
        el("th", { scope: "col", class: "number", text: "Value" }),
      ),
    ),
    rows,
  );
  const listStatus = el("p", { class: "list-status", tabindex: "-1" });
  const loadMore = el("button", { type: "button", class: "button", text: "Load more", hidden: true });

  const typesList = el("datalist", { id: nextId("types") });
  const recordType = field({
    label: "Metric type",
    name: "metric_type",
    list: typesList.id,
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    hint: "Letters, digits and _ . : - (up to 100), e.g. page_view.",
  });
  const recordValue = field({
    label: "Value",
    name: "metric_value",
    inputmode: "decimal",
    autocomplete: "off",
    required: true,
  });
  const recordTime = field({
    label: "Recorded at (optional)",
    name: "recorded_at",
    type: "datetime-local",
    step: "1",
    hint: `Leave empty for now. Your time zone: ${timeZone}.`,
  });
  const recordForm = submitForm([recordType, typesList, recordValue, recordTime], "Record", {
    submit: async (values) => {
      const body = { metric_type: values.metric_type.trim(), metric_value: values.metric_value.trim() };
      if (values.recorded_at) body.recorded_at = new Date(values.recorded_at).toISOString();
      const metric = await api.post("/api/dashboard/metrics", body);
      recordValue.input.value = "";
      await loadAll();
      return `Recorded ${metric.metric_type} = ${formatNumber(metric.metric_value)} at ${formatMoment(new Date(metric.recorded_at))}.`;
    },
  });

  const banner = verificationBanner(app);
  view.append(
    pageHead("Dashboard", who),
    banner.node,
    notice,
    controls,
    el(
      "section",
      { class: "card", "aria-labelledby": chartHeading.id },
      chartHeading,
      statsCaption,
      stats,
      chartBox,
      chartEmpty,
    ),
    el(
      "div",
      { class: "columns" },
      el(
        "section",
        { class: "card", "aria-labelledby": "metrics-title" },
        el("h2", { id: "metrics-title", text: "Metrics" }),
        el("div", { class: "table-scroll" }, table),
        listStatus,
        loadMore,
      ),
      el(
        "section",
        { class: "card", "aria-labelledby": "record-title" },
        el("h2", { id: "record-title", text: "Record a metric" }),
        recordForm,
      ),
    ),
  );

  // --- drawing from what was loaded ----------------------------------------------
  const rangeOf = (id = state.range) => RANGES.find((range) => range.id === id);
  const sinceOf = () => bucketStart(rangeOf().since(Date.now()), state.bucket); // whole buckets

  function showWho() {
    banner.update();
    who.textContent = app.user
      ? `Signed in as ${app.user.email}. Times are in ${timeZone}.`
      : `Times are in ${timeZone}.`;
  }

  function drawControls() {
    const hourly = (Date.now() - rangeOf().since(Date.now())) / (24 * HOUR) <= MAX_HOURLY_DAYS;
    select(bucket, BUCKETS, state.bucket);
    bucket.input.querySelector("option[value=hour]").disabled = !hourly;
    const names = new Set(summaryShown.series.map((one) => one.metric_type));
    if (state.type) names.add(state.type);
    const types = [...names].sort();
    select(type, [{ id: "", label: "All types" }, ...types.map((name) => ({ id: name, label: name }))], state.type);
    typesList.replaceChildren(...types.map((name) => el("option", { value: name })));
  }

  function drawSummary() {
    const { series, range, bucket: per, since } = summaryShown;
    const points = combine(series, state.type);
    const measureLabel = MEASURES.find((m) => m.id === state.measure).label;
    const what = state.type || "all types";
    const words = rangeOf(range).words;
    chartHeading.textContent = `${measureLabel} per ${per}`;
    statsCaption.textContent = `${state.type || "All types"}, ${words}`;
    const total = totals(points);
    stats.replaceChildren(
      ...MEASURES.map((m) =>
        el(
          "div",
          { class: "stat" },
          el("dt", { text: m.label }),
          el("dd", {
            text: !total ? "–" : m.id === "count" ? formatNumber(total.count) : formatShortNumber(total[m.id]),
          }),
        ),
      ),
    );
    const nothing = !series.length;
    stats.hidden = nothing;
    statsCaption.hidden = nothing;
    chartEmpty.hidden = points.length > 0;
    chartBox.hidden = points.length === 0;
    chartEmpty.replaceChildren(
      nothing
        ? emptyState(app.user?.email, words)
        : el("p", { class: "empty-note", text: `No ${what} metrics in ${words}.` }),
    );
    if (points.length) {
      chart.update({
        points,
        bucket: per,
        start: since,
        end: addBuckets(bucketStart(new Date(), per), per),
        measure: state.measure,
        label: `${measureLabel} of ${what} per ${per}`,
      });
    }
  }

  function rowOf(metric) {
    return el(
      "tr",
      { "data-id": metric.id, "data-at": metric.recorded_at },
      el("td", {}, el("time", { datetime: metric.recorded_at, text: formatMoment(new Date(metric.recorded_at)) })),
      el("td", { text: metric.metric_type }),
      el("td", { class: "number", text: formatNumber(metric.metric_value) }),
    );
  }

  function appendRows(items) {
    rows.append(...items.map(rowOf));
  }

  function drawPage(page, { replace }) {
    if (replace) rows.replaceChildren();
    appendRows(page.items);
    listShown.cursor = page.next_cursor;
    loadMore.hidden = !listShown.cursor;
    drawListStatus();
  }

  /** The table, and the line above it, as the rows now are (also after live ones). */
  function drawListStatus() {
    const shown = rows.children.length;
    table.hidden = shown === 0;
    listStatus.textContent =
      shown === 0
        ? `No ${listShown.type || "metrics"} recorded in ${rangeOf(listShown.range).words}.`
        : listShown.cursor
          ? `Showing the newest ${shown}.`
          : `All ${shown} shown.`;
  }

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return; // on the way to sign-in
    notice.textContent = `Could not load: ${describeProblem(error)}`;
    notice.hidden = false;
  }

  // --- loading ---------------------------------------------------------------------
  async function loadSummary(since) {
    const ticket = ++summaryLoads;
    const chosen = { range: state.range, bucket: state.bucket, since };
    const query = { bucket: chosen.bucket, tz: timeZone, since: since.toISOString() };
    const summary = await api.get("/api/dashboard/summary", query);
    if (ticket !== summaryLoads) return; // a newer choice is on its way
    summaryShown = { ...chosen, series: summary.series };
    drawControls();
    drawSummary();
  }

  async function loadList(since) {
    const ticket = ++listLoads;
    const query = { metric_type: state.type, since: since.toISOString(), limit: PAGE_SIZE };
    const chosen = { query, type: state.type, range: state.range, cursor: null };
    const page = await api.get("/api/dashboard/metrics", query);
    if (ticket !== listLoads) return;
    listShown = chosen;
    drawPage(page, { replace: true });
  }

  async function loadWho() {
    if (app.user) return;
    app.signedIn(await api.get("/api/auth/me"));
    showWho();
  }

  /** Wait for ``loads`` (run at once); say what failed, if anything did. */
  async function settle(...loads) {
    try {
      await Promise.all(loads);
      notice.hidden = true;
    } catch (error) {
      failed(error);
    }
  }

  /** The summary and the first page for the current choice, and who is signed in. */
  function loadAll() {
    const since = sinceOf();
    return settle(loadSummary(since), loadList(since), loadWho());
  }

  ranges.addEventListener("change", (event) => {
    state.range = event.target.value;
    state.bucket = rangeOf().bucket;
    drawControls();
    loadAll();
  });
  bucket.input.addEventListener("change", () => {
    state.bucket = bucket.input.value;
    loadAll();
  });
  type.input.addEventListener("change", () => {
    // Only the list is fetched again: the summary holds every type already.
    state.type = type.input.value;
    drawSummary();
    settle(loadList(sinceOf()));
  });
  measure.input.addEventListener("change", () => {
    state.measure = measure.input.value;
    drawSummary();
  });

  loadMore.addEventListener("click", async () => {
    const release = disableWhileBusy(loadMore);
    const ticket = listLoads;
    try {
      const page = await api.get("/api/dashboard/metrics", { ...listShown.query, cursor: listShown.cursor });
      if (ticket !== listLoads) return;
      const before = rows.children.length;
      drawPage(page, { replace: false });
      notice.hidden = true; // an earlier failure is over
      app.announce(`${rows.children.length - before} more metrics loaded.`);
      if (loadMore.hidden) listStatus.focus();
    } catch (error) {
      failed(error);
    } finally {
      release();
    }
  });

  // --- live: metrics pushed as they are recorded, by this or any other device ------
  let reloading = null;
  function reloadSoon(load) {
    clearTimeout(reloading); // a burst of metrics: one reload after it
    reloading = setTimeout(() => settle(load()), 300);
  }

  function showNew(metric) {
    const at = new Date(metric.recorded_at);
    const listed = (!listShown.type || listShown.type === metric.metric_type) && at >= sinceOf();
    if (listShown.query && listed && !rows.querySelector(`tr[data-id="${metric.id}"]`)) {
      // Newest first, as the list is: before the first row recorded earlier.
      const later = [...rows.children].find((row) => new Date(row.dataset.at) < at);
      if (later) rows.insertBefore(rowOf(metric), later);
      else if (!listShown.cursor) rows.append(rowOf(metric)); // else it belongs to a later page
      drawListStatus();
    }
    reloadSoon(() => loadSummary(sinceOf())); // the chart's bucket and the totals grow
  }

  followMetrics({
    onMetric: showNew,
    onBackfill: () => reloadSoon(loadAll),
    isActive: () => view.isConnected,
  });

  showWho();
  drawControls();
  await loadAll();
}
