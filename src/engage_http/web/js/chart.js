// The summary chart: one bar per bucket, drawn as SVG on a time axis labelled
// in the browser's time zone, with a tooltip that follows the pointer or the
// arrow keys. Colours come from the style sheet, so both colour schemes work.

import { clear, el, svg } from "./dom.js";
import {
  addBuckets,
  bucketCeil,
  formatBucket,
  formatCompactNumber,
  formatDate,
  formatShortNumber,
} from "./format.js";

const HEIGHT = 240;
const MARGIN = { top: 14, right: 14, bottom: 30, left: 54 };
const MEASURES = ["count", "sum", "avg", "min", "max"];
const DAY = 86400 * 1000;
const APPROXIMATE = { hour: 3600 * 1000, day: DAY, week: 7 * DAY, month: 30.44 * DAY };
const TICK_STEPS = [
  ["hour", 1],
  ["hour", 3],
  ["hour", 6],
  ["hour", 12],
  ["day", 1],
  ["day", 2],
  ["week", 1],
  ["week", 2],
  ["month", 1],
  ["month", 3],
  ["month", 6],
];
const hourLabel = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayLabel = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const monthLabel = new Intl.DateTimeFormat(undefined, { month: "short" });
const yearLabel = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric" });

/** Round steps (1, 2, 5 × 10^k) from ``low`` to ``high``, about ``count`` of them. */
export function niceTicks(low, high, count = 4) {
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks = [];
  for (let k = Math.floor(low / step); k <= Math.ceil(high / step); k += 1) {
    ticks.push(Number((k * step).toPrecision(12)));
  }
  return ticks;
}

function monthStart(date) {
  return new Date(date.getFullYear(), date.getMonth(), 1);
}

function* tickTimes(unit, step, start, end) {
  let at;
  if (unit === "month") {
    at = monthStart(start);
    if (at < start) at = new Date(at.getFullYear(), at.getMonth() + 1, 1);
  } else {
    at = bucketCeil(start, unit);
  }
  for (let index = 0; at <= end; index += 1) {
    const keep =
      unit === "hour"
        ? at.getHours() % step === 0
        : unit === "month"
          ? at.getMonth() % step === 0
          : index % step === 0;
    if (keep) yield at;
    at = unit === "month" ? new Date(at.getFullYear(), at.getMonth() + 1, 1) : addBuckets(at, unit);
  }
}

function tickLabel(at, unit, first) {
  if (unit === "hour") {
    return at.getHours() === 0 ? dayLabel.format(at) : hourLabel.format(at);
  }
  if (unit === "month") {
    return first || at.getMonth() === 0 ? yearLabel.format(at) : monthLabel.format(at);
  }
  return dayLabel.format(at);
}

/** The time-axis ticks for a span and a width: the finest step whose labels fit. */
export function timeTicks(start, end, width) {
  const fits = Math.max(2, Math.floor(width / 76));
  const span = end - start;
  const [unit, step] =
    TICK_STEPS.find(([u, s]) => span / (APPROXIMATE[u] * s) <= fits) ?? TICK_STEPS.at(-1);
  return Array.from(tickTimes(unit, step, start, end), (at, index) => ({
    at,
    label: tickLabel(at, unit, index === 0),
  }));
}

/**
 * A chart in ``container``; call ``update`` with the points to draw:
 * ``{points: [{start: Date, count, sum, avg, min, max}], bucket, start, end, measure, label}``.
 */
export function createChart(container) {
  const tooltip = el("div", { class: "chart-tooltip", role: "status", "aria-live": "polite" });
  tooltip.hidden = true;
  const canvas = svg("svg", { class: "chart-svg", role: "img", tabindex: "0" });
  container.classList.add("chart");
  clear(container).append(canvas, tooltip);

  let state = null;
  let bars = [];
  let active = -1;
  let drawnWidth = 0;

  function draw() {
    if (!state) return;
    const width = Math.max(280, Math.floor(container.clientWidth));
    drawnWidth = width;
    const { points, bucket, start, end, measure, label } = state;
    const inner = { width: width - MARGIN.left - MARGIN.right, height: HEIGHT - MARGIN.top - MARGIN.bottom };
    const t0 = start.getTime();
    const span = Math.max(1, end.getTime() - t0);
    const x = (time) => MARGIN.left + ((time - t0) / span) * inner.width;
    const values = points.map((point) => point[measure]);
    let low = Math.min(0, ...values);
    let high = Math.max(0, ...values);
    if (low === high) high = low + 1;
    const yTicks = niceTicks(low, high);
    low = yTicks[0];
    high = yTicks.at(-1);
    const y = (value) => MARGIN.top + (1 - (value - low) / (high - low)) * inner.height;

    canvas.setAttribute("width", width);
    canvas.setAttribute("height", HEIGHT);
    canvas.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    canvas.setAttribute(
      "aria-label",
      `${label}: ${points.length} ${points.length === 1 ? "bar" : "bars"} from ${formatDate(start)} ` +
        `to ${formatDate(end)}. Use the left and right arrow keys to read each bar.`,
    );

    const grid = svg(
      "g",
      { class: "chart-grid" },
      yTicks.map((tick) =>
        svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick) }),
      ),
    );
    const yAxis = svg(
      "g",
      { class: "chart-axis chart-axis-y" },
      yTicks.map((tick) =>
        svg("text", { x: MARGIN.left - 8, y: y(tick), dy: "0.32em", "text-anchor": "end" }, formatCompactNumber(tick)),
      ),
    );
    const baseline = HEIGHT - MARGIN.bottom;
    const xAxis = svg(
      "g",
      { class: "chart-axis chart-axis-x" },
      svg("line", { class: "chart-baseline", x1: MARGIN.left, x2: width - MARGIN.right, y1: baseline, y2: baseline }),
      timeTicks(start, end, inner.width).map(({ at, label: text }) => {
        const position = x(at.getTime());
        const anchor = position > width - 36 ? "end" : "middle";
        return svg(
          "g",
          { class: "chart-tick" },
          svg("line", { x1: position, x2: position, y1: baseline, y2: baseline + 5 }),
          svg("text", { x: position, y: baseline + 18, "text-anchor": anchor }, text),
        );
      }),
    );
    bars = points.map((point) => {
      const left = x(point.start.getTime());
      const slot = x(addBuckets(point.start, bucket).getTime()) - left;
      const gap = slot > 4 ? Math.max(1, slot * 0.15) : 0;
      const value = point[measure];
      const zero = y(0);
      let top = Math.min(zero, y(value));
      let height = Math.abs(zero - y(value));
      if (value !== 0 && height < 1) {
        height = 1; // a value too small for a pixel still shows
        if (value > 0) top = zero - 1;
      }
      const bar = svg("rect", {
        class: "chart-bar",
        x: left + gap / 2,
        y: top,
        width: Math.max(1, slot - gap),
        height,
        "data-start": point.start.toISOString(),
        "data-value": value,
        "data-count": point.count,
      });
      return { bar, point, center: left + slot / 2, top };
    });
    canvas.replaceChildren(
      grid,
      svg("g", { class: "chart-bars" }, bars.map((entry) => entry.bar)),
      yAxis,
      xAxis,
    );
    active = Math.min(active, bars.length - 1);
    if (active >= 0 && !tooltip.hidden) activate(active);
    else hide();
  }

  function activate(index) {
    bars[active]?.bar.classList.remove("is-active");
    active = index;
    const entry = bars[index];
    if (!entry) return hide();
    entry.bar.classList.add("is-active");
    const { point } = entry;
    const values = el(
      "dl",
      {},
      MEASURES.map((name) =>
        el(
          "div",
          {},
          el("dt", { text: name }),
          el("dd", { text: name === "count" ? String(point.count) : formatShortNumber(point[name]) }),
        ),
      ),
    );
    tooltip.replaceChildren(el("p", { class: "chart-tooltip-title", text: formatBucket(point.start, state.bucket) }), values);
    tooltip.hidden = false;
    const left = Math.min(Math.max(0, entry.center - tooltip.offsetWidth / 2), drawnWidth - tooltip.offsetWidth);
    tooltip.style.left = `${Math.max(0, left)}px`;
    tooltip.style.top = `${Math.max(0, entry.top - tooltip.offsetHeight - 10)}px`;
    return undefined;
  }

  function hide() {
    bars[active]?.bar.classList.remove("is-active");
    tooltip.hidden = true;
  }

  function nearest(clientX) {
    const offset = clientX - canvas.getBoundingClientRect().left;
    let best = -1;
    let distance = Infinity;
    bars.forEach((entry, index) => {
      const d = Math.abs(entry.center - offset);
      if (d < distance) {
        best = index;
        distance = d;
      }
    });
    return best;
  }

  function pointAt(event) {
    const index = nearest(event.clientX);
    if (index >= 0 && (index !== active || tooltip.hidden)) activate(index);
  }
  // A mouse moves over the bars; a finger taps one (pointerdown, then focus: no move).
  canvas.addEventListener("pointermove", pointAt);
  canvas.addEventListener("pointerdown", pointAt);
  canvas.addEventListener("pointerleave", () => {
    if (document.activeElement !== canvas) hide();
  });
  canvas.addEventListener("focus", () => {
    if (bars.length) activate(active >= 0 ? active : bars.length - 1);
  });
  canvas.addEventListener("blur", hide);
  canvas.addEventListener("keydown", (event) => {
    if (!bars.length) return;
    const moves = {
      ArrowLeft: Math.max(0, active - 1),
      ArrowRight: Math.min(bars.length - 1, active + 1),
      Home: 0,
      End: bars.length - 1,
    };
    if (event.key === "Escape") {
      hide();
    } else if (event.key in moves) {
      event.preventDefault();
      activate(moves[event.key]);
    }
  });

  // Redrawn for a new width in the next frame (never inside the observer's own callback).
  new ResizeObserver(() => {
    requestAnimationFrame(() => {
      if (Math.floor(container.clientWidth) !== drawnWidth) draw();
    });
  }).observe(container);

  return {
    update(next) {
      state = next;
      active = -1;
      draw();
    },
  };
}
