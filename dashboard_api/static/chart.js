/* One time-series chart drawn with the vendored uPlot (static/vendor/uPlot.iife.min.js, the global uPlot).
 *
 * The x values are the API's bucket starts (its points' ts) and nothing else: no bucket is computed
 * here. A null value is a gap; a bucket with a value that is not complete is shaded; a point the API
 * says is revised (published again with different data) is ringed.
 */

/* global uPlot */

import { formatAxis, formatter, formatValue, isNumber } from "./format.js";

const PALETTE = ["#4f46e5", "#0e9384", "#dd2590", "#e8590c", "#2e90fa", "#7a5af8"];
const OTHER_COLOR = "#98a2b3";
const INCOMPLETE_FILL = "rgba(247, 144, 9, 0.13)";
export const REVISED_COLOR = "#d92d20"; // the ring around a revised point (and its key, dashboard.css)
const REVISED_RADIUS = 6;
const PLOT_HEIGHT = 210;
const MIN_WIDTH = 240;
// Tick steps for counts: 1, 2, 5, 10, 20, 50, ... (never half a unit).
const WHOLE_INCREMENTS = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9].flatMap((p) => [p, 2 * p, 5 * p]);
// uPlot's time-axis ticks, 24-hour and without US-style dates:
// [tick step (s), format, rollover formats for year, month, day, hour, minute, second, mode 1 = append].
const TIME_TICKS = [
  [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
  [3600 * 24 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
  [3600 * 24, "{MMM} {D}", "\n{YYYY}", null, null, null, null, null, 1],
  [3600, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
  [60, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
];

// record: { ts: [the points' ts], series: [{ label, other, values, complete, revised }], asOf }, from one
// API answer.
export function drawChart(metric, record, state, box) {
  return new uPlot(plotOptions(metric, record, state, box.clientWidth), plotData(record), box);
}

export function resizeChart(plot) {
  const box = plot.root.parentElement;
  plot.setSize({ width: Math.max(box.clientWidth, MIN_WIDTH), height: PLOT_HEIGHT });
}

// One colour per split value on every chart of a view, in the order the values first appear.
const colors = new Map();
export function resetColors() {
  colors.clear();
}

function seriesColor(series) {
  if (series.other) return OTHER_COLOR;
  if (!colors.has(series.label)) colors.set(series.label, PALETTE[colors.size % PALETTE.length]);
  return colors.get(series.label);
}

function plotData(record) {
  return [record.ts.map((ts) => Date.parse(ts) / 1000), ...record.series.map((s) => s.values)];
}

export function statusLine(record) {
  const count = record.ts.length;
  const missing = record.ts.filter((_, i) => record.series.every((s) => s.values[i] === null)).length;
  const partial = incompleteBuckets(record).filter(Boolean).length;
  const revised = revisedBuckets(record).filter(Boolean).length;
  const parts = [`${count} bucket${count === 1 ? "" : "s"}`];
  if (partial) parts.push(`${partial} incomplete`);
  if (revised) parts.push(`${revised} revised`);
  if (missing) parts.push(`${missing} without data`);
  if (record.asOf) parts.push(`published ${record.asOf.slice(0, 16).replace("T", " ")} UTC`);
  return parts.join(" · ");
}

function bucketText(seconds, state) {
  const date = new Date(seconds * 1000);
  const options = {
    hour: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
    day: { weekday: "short", month: "short", day: "numeric" },
    week: { month: "short", day: "numeric", year: "numeric" },
    month: { month: "long", year: "numeric" },
  }[state.grain];
  const text = formatter(state.tz, options).format(date);
  return state.grain === "week" ? `Week of ${text}` : text;
}

// A bucket is shaded when it has a value that may still change; a null bucket is a gap.
function incompleteBuckets(record) {
  const complete = record.series[0].complete;
  return record.ts.map((_, i) => !complete[i] && record.series.some((s) => s.values[i] !== null));
}

// A bucket is revised when a series has a value there the API flags revised.
function revisedBuckets(record) {
  return record.ts.map((_, i) => record.series.some((s) => s.revised && s.revised[i] && s.values[i] !== null));
}

// A ring around each revised point of each shown series, over the lines.
function ringRevised(u, record) {
  const { ctx } = u;
  ctx.save();
  ctx.strokeStyle = REVISED_COLOR;
  ctx.lineWidth = 2 * devicePixelRatio;
  record.series.forEach((s, k) => {
    if (!s.revised || !u.series[k + 1].show) return;
    s.revised.forEach((revised, i) => {
      if (!revised || s.values[i] === null) return;
      const [x, y] = [u.valToPos(u.data[0][i], "x", true), u.valToPos(s.values[i], "y", true)];
      ctx.beginPath();
      ctx.arc(x, y, REVISED_RADIUS * devicePixelRatio, 0, 2 * Math.PI);
      ctx.stroke();
    });
  });
  ctx.restore();
}

// Each flagged point gets the band from halfway to its neighbours (as wide again at either end).
function shadeIncomplete(u, flags) {
  const xs = u.data[0];
  if (!flags.some(Boolean)) return;
  const { ctx, bbox } = u;
  const edge = (i, j) => (xs[i] + xs[j]) / 2;
  ctx.save();
  ctx.fillStyle = INCOMPLETE_FILL;
  flags.forEach((shaded, i) => {
    if (!shaded) return;
    let left = bbox.left;
    let right = bbox.left + bbox.width;
    if (i > 0) left = Math.max(left, u.valToPos(edge(i - 1, i), "x", true));
    else if (xs.length > 1) left = Math.max(left, u.valToPos(2 * xs[0] - edge(0, 1), "x", true));
    if (i < xs.length - 1) right = Math.min(right, u.valToPos(edge(i, i + 1), "x", true));
    else if (xs.length > 1) right = Math.min(right, u.valToPos(2 * xs[i] - edge(i - 1, i), "x", true));
    ctx.fillRect(left, bbox.top, right - left, bbox.height);
  });
  ctx.restore();
}

function plotOptions(metric, record, state, width) {
  const flags = incompleteBuckets(record);
  const revised = revisedBuckets(record);
  const single = record.series.length === 1;
  const showPoints = record.ts.length <= 62;
  // Away from the cursor the legend shows the newest bucket that has a value.
  const valued = record.ts.map((_, i) => i).filter((i) => record.series.some((s) => s.values[i] !== null));
  const resting = valued.length ? valued[valued.length - 1] : record.ts.length - 1;
  return {
    width: Math.max(width, MIN_WIDTH),
    height: PLOT_HEIGHT,
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), state.tz),
    legend: { live: true },
    cursor: { points: { size: 8 } },
    scales: {
      x: { time: true, range: (u, min, max) => xRange(min, max, record.ts.length, state.grain) },
      y: {
        range: (u, min, max) => [0, uPlot.rangeNum(0, isNumber(max) && max > 0 ? max : 1, 0.1, true)[1]],
      },
    },
    series: [
      {
        label: "Bucket",
        value: (u, seconds, s, idx) => {
          const i = idx ?? resting;
          const notes = [flags[i] ? "incomplete" : "", revised[i] ? "revised" : ""].filter(Boolean);
          return `${bucketText(u.data[0][i], state)}${notes.length ? ` (${notes.join(", ")})` : ""}`;
        },
      },
      ...record.series.map((s) => ({
        label: s.label,
        stroke: seriesColor(s),
        fill: single ? `${seriesColor(s)}14` : undefined,
        width: 2,
        spanGaps: false,
        points: { show: showPoints, size: 5, fill: "#ffffff" },
        value: (u, v, sidx, idx) => formatValue(u.data[sidx][idx ?? resting], metric.unit),
      })),
    ],
    axes: [
      {
        stroke: "#667085",
        grid: { stroke: "#eef0f4", width: 1 },
        ticks: { stroke: "#e4e7ec", width: 1 },
        ...timeTicks(state),
      },
      {
        stroke: "#667085",
        size: 60,
        grid: { stroke: "#eef0f4", width: 1 },
        ticks: { show: false },
        values: (u, splits) => splits.map((v) => formatAxis(v, metric.unit)),
        // Counts have whole-number ticks.
        ...(metric.kind === "count" || metric.kind === "count_distinct" ? { incrs: WHOLE_INCREMENTS } : {}),
      },
    ],
    hooks: { drawClear: [(u) => shadeIncomplete(u, flags)], draw: [(u) => ringRevised(u, record)] },
  };
}

// Day, week and month buckets get half a bucket of room at each end, so the first and last are not cut.
function xRange(min, max, count, grain) {
  if (min == null || max == null) return [min, max];
  const step = count > 1 ? (max - min) / (count - 1) : 86400;
  const pad = grain === "hour" && count > 1 ? 0 : step / 2;
  return [min - pad, max + pad];
}

// Hours and days: uPlot's own tick spacing, 24-hour. Weeks and months: one tick per bucket (or every k-th).
function timeTicks(state) {
  if (state.grain === "hour" || state.grain === "day") return { values: TIME_TICKS };
  const options = state.grain === "month" ? { month: "short", year: "numeric" } : { month: "short", day: "numeric" };
  const format = formatter(state.tz, options);
  return {
    splits: (u) => {
      const xs = u.data[0];
      const stride = Math.max(1, Math.ceil((xs.length * 64) / Math.max(u.bbox.width / devicePixelRatio, 1)));
      return xs.filter((_, i) => (xs.length - 1 - i) % stride === 0);
    },
    values: (u, splits) => splits.map((seconds) => format.format(new Date(seconds * 1000))),
  };
}
