/* Chart panels: one per metric, its query for the view, and what the API answered for it. */

import { api, metricPath } from "./api.js";
import { drawChart, resizeChart, statusLine } from "./chart.js";
import { isNumber, title } from "./format.js";
import { chartRange } from "./ranges.js";
import { dashboard, superseded, unsupportedFilter } from "./state.js";

const GROUP_LIMIT = 5; // with a split: the 5 largest series plus "other"

export function panelElement(metric) {
  const panel = document.createElement("section");
  panel.className = "panel";
  panel.dataset.metric = metric.name;
  const header = document.createElement("header");
  const heading = document.createElement("h3");
  heading.textContent = title(metric);
  const unit = document.createElement("span");
  unit.className = "unit";
  unit.textContent = metric.unit;
  header.append(heading, unit);
  const description = document.createElement("p");
  description.className = "description";
  description.textContent = metric.description;
  const plot = document.createElement("div");
  plot.className = "plot";
  const status = document.createElement("p");
  status.className = "status";
  panel.append(header, description, plot, status);
  return panel;
}

// Draws the metric's chart; rethrows what stops the whole view (401, 503, and a refused zone).
export async function loadChart(metric, state, anchor, generation) {
  const panel = document.querySelector(`.panel[data-metric="${CSS.escape(metric.name)}"]`);
  const [plotBox, status] = [panel.querySelector(".plot"), panel.querySelector(".status")];
  const previous = dashboard.charts[metric.name];
  if (previous && previous.plot) previous.plot.destroy();
  const record = { metric: metric.name, query: null, ts: [], series: [], plot: null };
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
  };
  let body;
  try {
    body = await api(metricPath(metric.name), record.query);
  } catch (error) {
    if (superseded(generation)) return;
    if (error.code === "unsupported_timezone") throw error; // the view falls back to UTC: see render()
    record.error = error.code;
    panel.classList.add("failed");
    showMessage(plotBox, status, error.message, record);
    if (error.status === 401 || error.status === 503) throw error;
    return;
  }
  if (superseded(generation)) return;
  record.asOf = body.as_of;
  record.series = body.series.map((s) => ({
    label: seriesLabel(s, split),
    labels: s.labels,
    other: s.other,
    values: s.points.map((p) => (isNumber(p.value) ? p.value : null)),
    complete: s.points.map((p) => p.complete),
  }));
  // The buckets are the API's: every series of an answer has the same points, in order.
  record.ts = body.series.length ? body.series[0].points.map((p) => p.ts) : [];
  if (!record.series.length) {
    return showMessage(plotBox, status, `No ${split || "data"} values in this range.`, record);
  }
  plotBox.replaceChildren();
  record.plot = drawChart(metric, record, state, plotBox);
  status.textContent = statusLine(record) + (state.groupBy && !split ? ` · not split by ${state.groupBy}` : "");
}

function showMessage(plotBox, status, text, record) {
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
