/* The view's pickers: range, grain, time zone, split and one filter per dimension.
 *
 * A pick changes dashboard.state and the query string, then calls back to draw the new view.
 * The filter choices are the values the API's values endpoint lists, the most common first.
 */

import { api, metricPath } from "./api.js";
import { isNumber } from "./format.js";
import { chartRange, GRAINS, RANGES } from "./ranges.js";
import { $, dashboard, dimensions, writeState } from "./state.js";

const VALUES_LIMIT = 50; // filter choices offered per dimension
const dimensionValues = new Map(); // "dim|tz|start|end" -> [values, the most common first]

function option(value, text, selected) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  element.selected = selected;
  return element;
}

// choices: [value, text] pairs.
export function fillSelect(select, choices, selected) {
  select.replaceChildren(...choices.map(([value, text]) => option(value, text, value === selected)));
}

export function renderControls(state) {
  fillSelect($("range"), RANGES.map((r) => [r.key, r.label]), state.range);
  fillSelect($("grain"), GRAINS.map((g) => [g, g.charAt(0).toUpperCase() + g.slice(1)]), state.grain);
  fillSelect($("tz"), [[state.tz, state.tz]], state.tz); // the zones on offer depend on the range: see render()
  const splits = dimensions().map((d) => [d, d.replaceAll("_", " ")]);
  fillSelect($("group-by"), [["", "Nothing"], ...splits], state.groupBy);
  renderFilters(state, {});
}

export function renderFilters(state, valuesByDimension) {
  const labels = dimensions().map((dim) => {
    const label = document.createElement("label");
    label.textContent = dim.replaceAll("_", " ");
    const select = document.createElement("select");
    select.dataset.dimension = dim;
    select.disabled = state.groupBy === dim;
    const current = state.filters[dim] || "";
    const values = [...new Set([...(valuesByDimension[dim] || []), ...(current ? [current] : [])])];
    fillSelect(select, [["", "All"], ...values.map((v) => [v, v])], current);
    label.append(select);
    return label;
  });
  $("filters").replaceChildren(...labels);
}

// onViewChange() draws dashboard.state, once it and the query string hold the pick.
export function bindControls(onViewChange) {
  const update = (change) => {
    const state = { ...dashboard.state, filters: { ...dashboard.state.filters }, ...change };
    // The API refuses a split and a filter on the same dimension.
    if (state.groupBy) delete state.filters[state.groupBy];
    dashboard.state = state;
    dashboard.zoneNotice = "";
    writeState(state);
    onViewChange();
  };
  $("range").addEventListener("change", (e) => {
    update({ range: e.target.value, grain: RANGES.find((r) => r.key === e.target.value).grain });
    $("grain").value = dashboard.state.grain;
  });
  $("grain").addEventListener("change", (e) => update({ grain: e.target.value }));
  $("tz").addEventListener("change", (e) => update({ tz: e.target.value }));
  $("group-by").addEventListener("change", (e) => update({ groupBy: e.target.value }));
  $("filters").addEventListener("change", (e) => {
    const filters = { ...dashboard.state.filters };
    const dim = e.target.dataset.dimension;
    if (e.target.value) filters[dim] = e.target.value;
    else delete filters[dim];
    update({ filters, groupBy: dashboard.state.groupBy === dim ? "" : dashboard.state.groupBy });
  });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
}

// The values each dimension takes in the chart range, the most common first: the values endpoint
// of the first metric that has the dimension (its counts are that metric's over the range).
export async function loadDimensionValues(state, anchor) {
  const range = chartRange(state, anchor);
  const count = (entry) => (isNumber(entry.count) ? entry.count : -1);
  const found = {};
  await Promise.all(
    dimensions().map(async (dim) => {
      const metric = dashboard.catalogue.find((m) => m.dimensions.includes(dim));
      const key = [dim, state.tz, range.start, range.end].join("|");
      if (!dimensionValues.has(key)) {
        const path = `${metricPath(metric.name)}/values/${encodeURIComponent(dim)}`;
        const body = await api(path, { tz: state.tz, ...range }).catch(() => null);
        if (!body) return;
        const common = [...body.values].sort((a, b) => count(b) - count(a)).slice(0, VALUES_LIMIT);
        dimensionValues.set(key, common.map((entry) => entry.value));
      }
      found[dim] = dimensionValues.get(key);
    }),
  );
  return found;
}
