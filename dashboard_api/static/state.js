/* What the page shows, the catalogue's metrics, and the view as its query string (so a view is a link).
 *
 * window.tallyDashboard is this module's `dashboard`: the browser test reads it and compares
 * what was drawn with the API's own answers.
 */

import { GRAINS, RANGES } from "./ranges.js";
import { validZone } from "./tz.js";

const DEFAULTS = { range: "7d", grain: "day", tz: "UTC", groupBy: "" };

export const dashboard = {
  ready: false, // true once every card and chart of the current view is drawn (or failed)
  generation: 0,
  state: null,
  health: null,
  catalogue: [],
  headline: [], // metric names of the cards, in order: the spec's, from GET /v1/metrics
  cards: {},
  charts: {},
  retention: null, // the retention panel's query and the API's cohorts (retention.js)
  funnel: null, // the funnel panel's query and the day it shows (funnel.js)
  problems: [],
  zoneNotice: "", // why the zone asked for is not shown; kept until the view changes
  live: null, // the publish events followed (live.js)
};
window.tallyDashboard = dashboard;

export const $ = (id) => document.getElementById(id);

// A view whose answers arrive after the user picked another must not draw over it.
export function superseded(generation) {
  return generation !== dashboard.generation;
}

// Every dimension of the catalogue, in the order metrics first name them.
export function dimensions() {
  const seen = [];
  for (const metric of dashboard.catalogue) {
    for (const dim of metric.dimensions) if (!seen.includes(dim)) seen.push(dim);
  }
  return seen;
}

export function readState() {
  const params = new URLSearchParams(window.location.search);
  const range = RANGES.some((r) => r.key === params.get("range")) ? params.get("range") : DEFAULTS.range;
  const fallbackGrain = params.has("range") ? RANGES.find((r) => r.key === range).grain : DEFAULTS.grain;
  const grain = GRAINS.includes(params.get("grain")) ? params.get("grain") : fallbackGrain;
  const tz = params.get("tz") || DEFAULTS.tz;
  const dims = dimensions();
  const groupBy = dims.includes(params.get("group_by")) ? params.get("group_by") : DEFAULTS.groupBy;
  const filters = {};
  for (const dim of dims) {
    if (params.get(dim) && dim !== groupBy) filters[dim] = params.get(dim);
  }
  if (!validZone(tz)) {
    dashboard.zoneNotice = `Unknown time zone ${JSON.stringify(tz)}; showing UTC.`;
    return { range, grain, tz: "UTC", groupBy, filters };
  }
  return { range, grain, tz, groupBy, filters };
}

export function writeState(state) {
  const params = new URLSearchParams();
  params.set("range", state.range);
  params.set("grain", state.grain);
  params.set("tz", state.tz);
  if (state.groupBy) params.set("group_by", state.groupBy);
  for (const [dim, value] of Object.entries(state.filters)) params.set(dim, value);
  const poll = new URLSearchParams(window.location.search).get("poll"); // not the view: how it is followed
  if (poll) params.set("poll", poll);
  window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
}

// The zone of the link, for the freshness badge before the catalogue (and so the view) is known.
export function zoneFromUrl() {
  const tz = new URLSearchParams(window.location.search).get("tz");
  return tz && validZone(tz) ? tz : DEFAULTS.tz;
}

// A zone the API would refuse for this view (from a link, or kept across a range change) gives way
// to UTC, for cards and charts alike, with one notice saying why.
export function fallBackToUtc(state, notice) {
  dashboard.zoneNotice = notice;
  dashboard.state = { ...state, tz: "UTC" };
  writeState(dashboard.state);
  return dashboard.state;
}

// The metrics of the cards, in the spec's order; one card per metric, since a card is found by its data-metric.
export function headlineMetrics() {
  return [...new Set(dashboard.headline)]
    .map((name) => dashboard.catalogue.find((m) => m.name === name))
    .filter(Boolean);
}

// Every metric has a chart: the headline ones first.
export function chartMetrics() {
  const headline = headlineMetrics();
  return [...headline, ...dashboard.catalogue.filter((m) => !headline.includes(m))];
}

// Why a metric cannot be read with the view's filters, if it cannot: the dimension it lacks.
export function unsupportedFilter(metric, state) {
  return Object.keys(state.filters).find((dim) => !metric.dimensions.includes(dim));
}
