/* Which panels a publish event touches: the hours a panel's query reads, and the stored metrics.
 *
 * An event names the hours it changed and the stored metrics whose data changed (none: a change of
 * pending marks, which concerns every metric of its hours). A panel is touched when one of those hours
 * lies in what its query reads and the metrics include one it reads. Pure functions: no DOM, no fetch.
 */

import { boundInstant } from "./tz.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

// What a query reads: stored metric names (null: not known, so any) over spans [from, to) in ms.
// A window=Nd reaches N days back from each bucket's end, so the span starts that much earlier (and an
// hour more, for the 23- and 25-hour days of a time zone's clock changes).
function span(query, lookbackDays = 0) {
  const days = Math.max(lookbackDays, windowDays(query.window));
  const back = days ? days * DAY_MS + HOUR_MS : 0;
  return [boundInstant(query.start, query.tz) - back, boundInstant(query.end, query.tz)];
}

function windowDays(window) {
  const match = /^(\d+)d$/.exec(window || "");
  return match ? Number(match[1]) : 0;
}

// The stored metrics a metric reads, with how many days back of them: itself, or a ratio's parts.
// GET /v1/metrics does not list a ratio's parts (unless it gives `parts`: [{name, window_days}]), so a
// ratio counts as reading every metric, from any hour before its end: refreshed more often than needed,
// never left stale.
export function storedParts(metric) {
  if (metric.kind !== "ratio") return [{ name: metric.name, windowDays: 0 }];
  if (!Array.isArray(metric.parts)) return null;
  return metric.parts.map((p) => ({ name: p.name, windowDays: p.window_days || 0 }));
}

// A chart's or a card's queries (each {start, end, tz, window?}) of one metric.
export function seriesReads(metric, queries) {
  const parts = storedParts(metric);
  const lookback = parts ? Math.max(0, ...parts.map((p) => p.windowDays)) : Infinity;
  return {
    metrics: parts ? parts.map((p) => p.name) : null,
    spans: queries.map((q) => (lookback === Infinity ? [-Infinity, span(q)[1]] : span(q, lookback))),
  };
}

// The funnel's steps over its days; a retention table's cohorts and the periods after them (up to now).
export function sketchReads(names, query, { later = false } = {}) {
  const [from, to] = span(query);
  return { metrics: names, spans: [[from, later ? Infinity : to]] };
}

export function touches(event, reads) {
  const metrics = event.metrics || [];
  const concerned = !metrics.length || reads.metrics === null || metrics.some((m) => reads.metrics.includes(m));
  if (!concerned) return false;
  return (event.hours || []).some((hour) => {
    const start = Date.parse(hour);
    return reads.spans.some(([from, to]) => start < to && start + HOUR_MS > from);
  });
}

// Several events applied at once read as one: every hour and metric of them (none: all metrics).
export function mergeEvents(events) {
  const everyMetric = events.some((e) => !(e.metrics || []).length);
  return {
    types: [...new Set(events.map((e) => e.type))],
    hours: [...new Set(events.flatMap((e) => e.hours || []))].sort(),
    metrics: everyMetric ? [] : [...new Set(events.flatMap((e) => e.metrics))].sort(),
    revised: [...new Set(events.flatMap((e) => e.revised || []))].sort(),
  };
}
