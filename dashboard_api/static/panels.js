/* Chart panels: one per metric, its query for the view, and what the API answered for it.
 *
 * A quantile metric's panel is the percentile chart: it has a q picker (percentiles.js), and a pick
 * asks for that chart alone again (redrawChart).
 */

import { api, metricPath } from "./api.js";
import { drawChart, resizeChart, statusLine } from "./chart.js";
import { isNumber, title } from "./format.js";
import { showProblem } from "./notices.js";
import { isQuantile, percentileLabel, quantileParams, quantilePicker } from "./percentiles.js";
import { anchorOf, chartRange } from "./ranges.js";
import { dashboard, superseded, unsupportedFilter } from "./state.js";

const GROUP_LIMIT = 5; // with a split: the 5 largest series plus "other"

// A panel's frame: a header (heading, unit), a description, the box drawn into and a status line.
export function panelFrame(heading, unit, description) {
  const panel = document.createElement("section");
  panel.className = "panel";
  const header = document.createElement("header");
  const h3 = document.createElement("h3");
  h3.textContent = heading;
  const unitText = document.createElement("span");
  unitText.className = "unit";
  unitText.textContent = unit;
  header.append(h3, unitText);
  const about = document.createElement("p");
  about.className = "description";
  about.textContent = description;
  const plot = document.createElement("div");
  plot.className = "plot";
  const status = document.createElement("p");
  status.className = "status";
  panel.append(header, about, plot, status);
  return panel;
}

export function panelElement(metric) {
  const panel = panelFrame(title(metric), metric.unit, metric.description);
  panel.dataset.metric = metric.name;
  if (isQuantile(metric)) panel.querySelector(".unit").before(quantilePicker(metric));
  return panel;
}

// Draws the metric's chart; rethrows what stops the whole view (401, 503, and a refused zone).
export async function loadChart(metric, state, anchor, generation) {
  const panel = document.querySelector(`.panel[data-metric="${CSS.escape(metric.name)}"]`);
  const [plotBox, status] = [panel.querySelector(".plot"), panel.querySelector(".status")];
  const previous = dashboard.charts[metric.name];
  if (previous && previous.plot) previous.plot.destroy();
  const record = { metric: metric.name, query: null, q: null, ts: [], series: [], plot: null };
  dashboard.charts[metric.name] = record;
  panel.classList.remove("failed");

  const missingFilter = unsupportedFilter(metric, state);
  if (!metric.grains.includes(state.grain)) {
    return showMessage(plotBox, status, `Served at ${metric.grains.join(", ")} grain only.`, record);
  }
  if (missingFilter) return showMessage(plotBox, status, `Not sliced by ${missingFilter}.`, record);
  const split = state.groupBy && metric.dimensions.includes(state.groupBy) ? state.groupBy : "";
  record.query = {
    grain: state.grain,
    tz: state.tz,
    ...chartRange(state, anchor),
    ...state.filters,
    ...(split ? { group_by: split, limit: String(GROUP_LIMIT) } : {}),
    ...(isQuantile(metric) ? quantileParams(metric) : {}),
  };
  // A later view, or a later q pick for this chart, draws instead.
  const stale = () => superseded(generation) || dashboard.charts[metric.name] !== record;
  const body = await askForPanel(metricPath(metric.name), record.query, { panel, box: plotBox, status, record, stale });
  if (!body || stale()) return;
  record.asOf = body.as_of;
  record.q = isNumber(body.q) ? body.q : null;
  record.series = body.series.map((s) => ({
    label: seriesLabel(s, split),
    labels: s.labels,
    other: s.other,
    values: s.points.map((p) => (isNumber(p.value) ? p.value : null)),
    complete: s.points.map((p) => p.complete),
    revised: s.points.map((p) => p.revised === true),
  }));
  // The buckets are the API's: every series of an answer has the same points, in order.
  record.ts = body.series.length ? body.series[0].points.map((p) => p.ts) : [];
  if (!record.series.length) {
    return showMessage(plotBox, status, `No ${split || "data"} values in this range.`, record);
  }
  plotBox.replaceChildren();
  record.plot = drawChart(metric, record, state, plotBox);
  const percentile = record.q === null ? "" : `${percentileLabel(record.q)} of each bucket · `;
  status.textContent =
    percentile + statusLine(record) + (state.groupBy && !split ? ` · not split by ${state.groupBy}` : "");
}

// dashboard.ready is false while picks are being drawn, if the view itself was drawn when they began.
let redrawing = 0;
let readyBefore = false;

// One chart asked for again in the view drawn (a new q picked): the rest of the page stays as it is.
export async function redrawChart(name) {
  const metric = dashboard.catalogue.find((m) => m.name === name);
  const panel = document.querySelector(`.panel[data-metric="${CSS.escape(name)}"]`);
  const generation = dashboard.generation;
  if (redrawing++ === 0) readyBefore = dashboard.ready;
  dashboard.ready = false;
  panel.classList.add("loading");
  try {
    await loadChart(metric, dashboard.state, anchorOf(dashboard.health), generation);
  } catch (error) {
    if (!superseded(generation)) showProblem(error);
  } finally {
    panel.classList.remove("loading");
    if (--redrawing === 0 && readyBefore && !superseded(generation)) dashboard.ready = true;
  }
}

// Ask the API for a panel's data. A refused query is shown in the panel and answers null; what the
// whole view must handle is thrown: a zone it falls back from, a missing token, Redis down.
export async function askForPanel(path, query, { panel, box, status, record, stale }) {
  try {
    return await api(path, query);
  } catch (error) {
    if (stale()) return null;
    if (error.code === "unsupported_timezone") throw error; // the view falls back to UTC: see render()
    record.error = error.code;
    panel.classList.add("failed");
    showMessage(box, status, error.message, record);
    if (error.status === 401 || error.status === 503) throw error;
    return null;
  }
}

export function showMessage(plotBox, status, text, record) {
  const message = document.createElement("p");
  message.className = "message";
  message.textContent = text;
  plotBox.replaceChildren(message);
  status.textContent = "";
  record.message = text;
}

function seriesLabel(series, split) {
  if (series.other) return "Other";
  if (split) return series.labels[split];
  const filters = Object.entries(series.labels).map(([k, v]) => `${k} = ${v}`);
  return filters.length ? filters.join(", ") : "All";
}

export function resizeCharts() {
  for (const record of Object.values(dashboard.charts)) {
    if (record.plot) resizeChart(record.plot);
  }
}
