/* The funnel: GET /v1/funnel by day over the view's days, one bar per step for one day.
 *
 * The day shown is the latest complete one the API answered (every hour of it computed), so the
 * bars do not move while the day fills; when no day of the range is complete yet, the latest day
 * with a value, flagged incomplete. A step's bar is its value (ids in it and in every step before it,
 * the same day) against the first step's; its labels are the API's rate_from_first and
 * rate_from_previous. Nothing is computed here but the bars' widths.
 */

import { formatter, formatPercent, formatValue, isNumber, title } from "./format.js";
import { askForPanel, panelFrame, showMessage } from "./panels.js";
import { chartRange } from "./ranges.js";
import { dashboard, superseded, unsupportedFilter } from "./state.js";

const MAX_STEPS = 8; // the API's limit
// The last 24 hours hold less than one whole day: they get the week's days, of which one is complete.
const FUNNEL_RANGE = { "1d": "7d" };
const DAY_LABEL = { weekday: "short", month: "short", day: "numeric", year: "numeric" };

// The steps: the spec's theta metrics in the spec's order, without the retention's cohort and returning
// metrics (who signed up, who came back: not steps of a visit), at most MAX_STEPS. The default spec gives
// viewers, carters, buyers. Fewer than two: no panel. Steps must count the same ids, which the API checks
// (mixed_id_spaces); the panel then shows its message.
export function funnelSteps(catalogue, retention) {
  const excluded = retention ? [retention.cohort.name, retention.returning.name] : [];
  const steps = catalogue.filter((m) => m.sketch === "theta" && !excluded.includes(m.name)).slice(0, MAX_STEPS);
  return steps.length >= 2 ? steps : [];
}

export function funnelElement(steps) {
  const panel = panelFrame(
    "Funnel",
    steps[0].unit,
    `${steps.map((m) => title(m)).join(" → ")}: each bar counts the ids in its step and in every step before it.`,
  );
  panel.classList.add("funnel");
  panel.dataset.panel = "funnel";
  return panel;
}

export async function loadFunnel(steps, state, anchor, generation) {
  const panel = document.querySelector('.panel[data-panel="funnel"]');
  const [box, status] = [panel.querySelector(".plot"), panel.querySelector(".status")];
  const record = { query: null, bucket: null, message: null };
  dashboard.funnel = record;
  panel.classList.remove("failed");
  const missing = steps.map((m) => unsupportedFilter(m, state)).find(Boolean);
  if (missing) return showMessage(box, status, `Not sliced by ${missing}.`, record);
  if (!steps.every((m) => m.grains.includes("day"))) return showMessage(box, status, "Not served by day.", record);
  const range = FUNNEL_RANGE[state.range] || state.range;
  record.query = {
    steps: steps.map((m) => m.name).join(","),
    grain: "day",
    tz: state.tz,
    ...chartRange({ ...state, range, grain: "day" }, anchor),
    ...state.filters,
  };
  const stale = () => superseded(generation);
  const body = await askForPanel("v1/funnel", record.query, { panel, box, status, record, stale });
  if (!body || stale()) return;
  const bucket = shownBucket(body.buckets);
  if (!bucket) return showMessage(box, status, "No funnel data in this range yet.", record);
  record.bucket = bucket;
  const day = formatter(body.tz, DAY_LABEL).format(new Date(bucket.start));
  const which = bucket.complete ? "the latest complete day" : "no day of the range is complete yet";
  const caption = document.createElement("p");
  caption.className = "funnel-day";
  caption.textContent = `Users on ${day} (${which}; days in ${body.tz}). Order within the day is not checked.`;
  box.replaceChildren(caption, bars(bucket, steps));
  panel.classList.toggle("incomplete", !bucket.complete);
  const parts = [`${body.buckets.length} days asked`];
  if (state.groupBy) parts.push(`not split by ${state.groupBy}`);
  if (body.as_of) parts.push(`published ${body.as_of.slice(0, 16).replace("T", " ")} UTC`);
  status.textContent = parts.join(" · ");
}

// The latest complete day with a value; else the latest day with one.
function shownBucket(buckets) {
  const valued = buckets.filter((b) => b.steps.length && isNumber(b.steps[0].value));
  const complete = valued.filter((b) => b.complete);
  return complete.length ? complete[complete.length - 1] : valued[valued.length - 1] || null;
}

function bars(bucket, steps) {
  const list = document.createElement("ol");
  list.className = "funnel-bars";
  const first = bucket.steps[0].value;
  list.append(...bucket.steps.map((step, i) => stepItem(step, i, first, steps)));
  return list;
}

function stepItem(step, index, first, steps) {
  const item = document.createElement("li");
  item.className = "step";
  item.dataset.metric = step.metric;
  item.dataset.value = isNumber(step.value) ? String(step.value) : "";
  item.dataset.rateFromFirst = isNumber(step.rate_from_first) ? String(step.rate_from_first) : "";
  item.dataset.rateFromPrevious = isNumber(step.rate_from_previous) ? String(step.rate_from_previous) : "";
  const bar = span("bar", "");
  const fill = document.createElement("i");
  fill.style.setProperty("--share", String(isNumber(step.value) && first > 0 ? Math.min(step.value / first, 1) : 0));
  bar.append(fill);
  const rates = span("rates", "");
  rates.append(span("from-first", `${formatPercent(step.rate_from_first)} of first`));
  if (index > 0) rates.append(span("from-previous", `${formatPercent(step.rate_from_previous)} of previous`));
  const metric = steps.find((m) => m.name === step.metric) || { name: step.metric };
  item.append(span("name", title(metric)), bar, span("value", formatValue(step.value, "")), rates);
  return item;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}
