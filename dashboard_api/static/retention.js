/* The retention heat map: GET /v1/retention as a table of cohorts (rows) by offsets (columns).
 *
 * Each cell is the API's `rate` for the cohort and offset, written as a percentage and shaded by it.
 * A cell the API has no value for (the period lies ahead, or no hour of it is computed) stays blank;
 * a cell whose cohort or period is not complete is outlined as incomplete. Nothing is computed here.
 */

import { formatter, formatPercent, formatValue, isNumber, title } from "./format.js";
import { askForPanel, panelFrame, showMessage } from "./panels.js";
import { chartRange } from "./ranges.js";
import { dashboard, superseded, unsupportedFilter } from "./state.js";

// Names preferred for the cohort and for who came back (the default spec's); without them the first
// theta metric is both (a metric may return to itself: "of the users active in week W, who was
// active in week W+k"). No theta metric at all: no panel.
const COHORT_PREFERENCE = ["new_users"];
const RETURNING_PREFERENCE = ["returning_users", "active_users"];

// Cohorts and offsets per view range: daily cohorts for a week or less (the last 24 hours hold less
// than one whole day, so they get the week's), weekly ones beyond.
const SHAPES = {
  "1d": { range: "7d", grain: "day", periods: 6 },
  "7d": { range: "7d", grain: "day", periods: 6 },
  "30d": { range: "30d", grain: "week", periods: 4 },
  "90d": { range: "90d", grain: "week", periods: 8 },
};

const FULL_START = { dateStyle: "full", timeStyle: "short" };
const GRAIN_WORDS = { day: ["Day", "daily"], week: ["Week", "weekly"] };
const COHORT_LABEL = {
  day: { weekday: "short", month: "short", day: "numeric" },
  week: { month: "short", day: "numeric" },
};

export function retentionMetrics(catalogue) {
  const theta = catalogue.filter((m) => m.sketch === "theta");
  if (!theta.length) return null;
  const preferred = (names) => names.map((n) => theta.find((m) => m.name === n)).find(Boolean);
  const cohort = preferred(COHORT_PREFERENCE) || theta[0];
  return { cohort, returning: preferred(RETURNING_PREFERENCE) || cohort };
}

export function retentionElement(metrics) {
  const { cohort, returning } = metrics;
  const panel = panelFrame(
    "Retention",
    "cohorts × periods",
    `Each row is a cohort: the ${title(cohort).toLowerCase()} of one period. ` +
      `A cell is the share of them also among ${title(returning).toLowerCase()} k periods later.`,
  );
  panel.classList.add("retention");
  panel.dataset.panel = "retention";
  panel.querySelector(".plot").classList.add("heatmap-box");
  return panel;
}

export async function loadRetention(metrics, state, anchor, generation) {
  const panel = document.querySelector('.panel[data-panel="retention"]');
  const [box, status] = [panel.querySelector(".plot"), panel.querySelector(".status")];
  const record = { query: null, cohorts: [], message: null };
  dashboard.retention = record;
  panel.classList.remove("failed");
  const shape = SHAPES[state.range];
  const { cohort, returning } = metrics;
  const missing = unsupportedFilter(cohort, state) || unsupportedFilter(returning, state);
  if (missing) return showMessage(box, status, `Not sliced by ${missing}.`, record);
  if (![cohort, returning].every((m) => m.grains.includes(shape.grain))) {
    return showMessage(box, status, `Not served at ${shape.grain} grain.`, record);
  }
  const { start, end } = chartRange({ ...state, range: shape.range, grain: shape.grain }, anchor);
  record.query = {
    cohort: cohort.name,
    returning: returning.name,
    grain: shape.grain,
    tz: state.tz,
    start,
    end,
    periods: String(shape.periods),
    ...state.filters,
  };
  const stale = () => superseded(generation);
  const body = await askForPanel("v1/retention", record.query, { panel, box, status, record, stale });
  if (!body || stale()) return;
  record.cohorts = body.cohorts;
  box.replaceChildren(heatmap(body, state, cohort.unit), legend());
  status.textContent = retentionStatus(body, state);
}

function heatmap(body, state, unit) {
  const table = document.createElement("table");
  table.className = "heatmap";
  const offsets = Array.from({ length: body.periods + 1 }, (_, k) => k);
  const head = document.createElement("tr");
  head.append(cell("th", "Cohort"), cell("th", unit.charAt(0).toUpperCase() + unit.slice(1)));
  for (const k of offsets) head.append(cell("th", `${GRAIN_WORDS[body.grain][0]} ${k}`));
  const thead = document.createElement("thead");
  thead.append(head);
  const tbody = document.createElement("tbody");
  tbody.append(...body.cohorts.map((cohort) => cohortRow(cohort, body.grain, state.tz)));
  table.append(thead, tbody);
  return table;
}

// The cohort's start and size, then one cell per offset.
function cohortRow(cohort, grain, tz) {
  const row = document.createElement("tr");
  row.dataset.start = cohort.start;
  const label = formatter(tz, COHORT_LABEL[grain]).format(new Date(cohort.start));
  const name = cell("th", grain === "week" ? `Week of ${label}` : label);
  name.title = `Starts ${formatter(tz, FULL_START).format(new Date(cohort.start))}`;
  const size = cell("td", formatValue(cohort.size, ""));
  size.className = "size";
  size.dataset.size = isNumber(cohort.size) ? String(cohort.size) : "";
  if (isNumber(cohort.size) && !cohort.complete) markIncomplete(size, "This cohort's period is not complete.");
  row.append(name, size, ...cohort.periods.map(rateCell));
  return row;
}

function rateCell(period) {
  const td = cell("td", "");
  td.className = "rate";
  td.dataset.offset = String(period.offset);
  td.dataset.rate = isNumber(period.rate) ? String(period.rate) : "";
  td.dataset.value = isNumber(period.value) ? String(period.value) : "";
  td.dataset.complete = String(period.complete);
  if (period.value === null) {
    td.classList.add("none");
    td.title = "Not computed yet";
    return td;
  }
  td.textContent = formatPercent(period.rate);
  if (isNumber(period.rate)) {
    td.style.setProperty("--rate", String(Math.min(Math.max(period.rate, 0), 1)));
    if (period.rate >= 0.5) td.classList.add("dark");
  }
  td.title = `${formatValue(period.value, "")} of the cohort, from ${period.start}`;
  if (!period.complete) markIncomplete(td, "Incomplete: some hour of the cohort or of this period is not computed yet.");
  return td;
}

function legend() {
  const keys = document.createElement("p");
  keys.className = "heat-legend";
  for (const [swatch, text] of [
    ["scale", "0% to 100% of the cohort"],
    ["incomplete", "incomplete (*)"],
    ["none", "not computed yet"],
  ]) {
    const key = document.createElement("span");
    const mark = document.createElement("i");
    mark.className = swatch;
    key.append(mark, text);
    keys.append(key);
  }
  return keys;
}

function markIncomplete(element, why) {
  element.classList.add("incomplete");
  element.dataset.complete = "false";
  element.title = element.title ? `${element.title}. ${why}` : why;
}

function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

function retentionStatus(body, state) {
  const incomplete = body.cohorts.flatMap((c) => c.periods).filter((p) => p.value !== null && !p.complete).length;
  const parts = [`${body.cohorts.length} ${GRAIN_WORDS[body.grain][1]} cohorts in ${body.tz}`, `offsets 0 to ${body.periods}`];
  if (incomplete) parts.push(`${incomplete} incomplete`);
  if (state.groupBy) parts.push(`not split by ${state.groupBy}`);
  if (body.as_of) parts.push(`published ${body.as_of.slice(0, 16).replace("T", " ")} UTC`);
  return parts.join(" · ");
}
