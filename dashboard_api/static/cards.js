/* Headline cards: each metric over the range's days ending at the anchor, against the days before. */

import { api, metricPath } from "./api.js";
import { change, formatValue, isNumber, title } from "./format.js";
import { cardPeriods, oldestHour, rangeOf } from "./ranges.js";
import { dashboard, superseded, unsupportedFilter } from "./state.js";

export function cardElement(metric) {
  const card = document.createElement("article");
  card.className = "card";
  card.dataset.metric = metric.name;
  card.title = metric.description;
  const heading = document.createElement("h2");
  heading.textContent = title(metric);
  const value = document.createElement("p");
  value.className = "value";
  value.textContent = "…";
  const delta = document.createElement("p");
  delta.className = "change";
  card.append(heading, value, delta);
  return card;
}

// Fills the metric's card; rethrows what stops the whole view (401: a token; 503: no Redis).
export async function loadCard(metric, state, anchor, generation) {
  const range = rangeOf(state);
  const card = document.querySelector(`.card[data-metric="${CSS.escape(metric.name)}"]`);
  const record = { metric: metric.name, value: null, previous: null, complete: false, queries: null };
  dashboard.cards[metric.name] = record;
  const periods = cardPeriods(state, anchor, oldestHour(dashboard.health));
  const missingFilter = unsupportedFilter(metric, state);
  let reason = null;
  if (missingFilter) reason = `not sliced by ${missingFilter}`;
  else if (!metric.grains.includes(periods.current.grain) || metric.max_window_days < range.days) {
    reason = `not served over ${range.days} days`;
  }
  if (reason) {
    fillCard(card, metric, record, range, reason);
    return;
  }
  const base = { tz: "UTC", window: `${range.days}d`, ...state.filters };
  record.queries = { current: { ...base, ...periods.current }, previous: { ...base, ...periods.previous } };
  try {
    const [current, previous] = await Promise.all([
      api(metricPath(metric.name), record.queries.current),
      api(metricPath(metric.name), record.queries.previous),
    ]);
    if (superseded(generation)) return;
    const first = (body) => (body.series[0] && body.series[0].points[0]) || { value: null, complete: false };
    Object.assign(record, {
      value: first(current).value,
      complete: first(current).complete,
      previous: first(previous).value,
      previousComplete: first(previous).complete,
    });
    fillCard(card, metric, record, range, null);
  } catch (error) {
    if (superseded(generation)) return;
    record.error = error.code;
    fillCard(card, metric, record, range, error.message);
    if (error.status === 401 || error.status === 503) throw error;
  }
}

function fillCard(card, metric, record, range, reason) {
  const [value, delta] = card.querySelectorAll("p");
  card.dataset.value = isNumber(record.value) ? String(record.value) : "";
  card.dataset.previous = isNumber(record.previous) ? String(record.previous) : "";
  card.dataset.complete = String(Boolean(record.complete));
  card.classList.toggle("incomplete", isNumber(record.value) && !record.complete);
  value.textContent = formatValue(record.value, metric.unit);
  if (reason) {
    delta.replaceChildren(reason);
    delta.dataset.direction = "none";
    return;
  }
  const moved = change(record.value, record.previous, metric.unit);
  record.change = moved ? moved.value : null;
  delta.dataset.direction = !moved || moved.value === 0 ? "none" : moved.value > 0 ? "up" : "down";
  if (!moved) {
    const why = isNumber(record.previous) ? "no change to show" : "no data";
    delta.replaceChildren(`${why} for the ${range.previous}`);
  } else {
    const amount = document.createElement("span");
    amount.className = "delta";
    amount.textContent = `${moved.value > 0 ? "▲ " : moved.value < 0 ? "▼ " : ""}${moved.text}`;
    delta.replaceChildren(amount, ` vs ${range.previous}`);
  }
  if (isNumber(record.value) && !record.complete) {
    const why = "Some hour of this period is not computed yet, in progress, or being recomputed.";
    delta.append(flag("incomplete", why));
  } else if (moved && !record.previousComplete) {
    const why = `Some hour of the ${range.previous} is not computed yet, or is being recomputed.`;
    delta.append(flag("prior incomplete", why));
  }
}

function flag(text, explanation) {
  const element = document.createElement("span");
  element.className = "flag";
  element.textContent = text;
  element.title = explanation;
  return element;
}
