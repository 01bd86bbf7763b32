/* Which time zones a view can be shown in.
 *
 * Tally's buckets start at whole UTC hours, so the API refuses (400 unsupported_timezone) a zone
 * that is a fractional number of hours from UTC anywhere in a range: such zones are not offered,
 * and one from a link gives way to UTC. The page checks before asking, so such a zone never
 * reaches the API; a refusal it did not foresee is handled by the view (see dashboard.js).
 */

import { beyondHourTier, chartRange, oldestHour } from "./ranges.js";
import { dashboard } from "./state.js";
import { boundInstant, offsetMinutes, utcOffset } from "./tz.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

// The first instant of the view's chart range where tz is off whole hours, or null. Sampled at the
// start, each day after it and the last hour: no zone keeps a fractional offset for less than a day.
function fractionalInstant(state, anchor, tz) {
  if (tz === "UTC") return null;
  const range = chartRange({ ...state, tz }, anchor);
  const [start, end] = [boundInstant(range.start, tz), boundInstant(range.end, tz)];
  const samples = [];
  for (let ms = start; ms < end - HOUR_MS; ms += DAY_MS) samples.push(ms);
  samples.push(end - HOUR_MS);
  return samples.find((ms) => offsetMinutes(tz, ms) % 60 !== 0) ?? null;
}

// UTC, the browser's zone and every Intl zone, less those the API refuses over this view's range;
// the view's own zone stays listed, so the picker shows it. (~400 zones: kept while range and anchor are.)
let servedZones = { key: "", zones: [] };
export function offeredZones(state, anchor) {
  const key = [state.range, state.grain, anchor].join("|");
  if (servedZones.key !== key) {
    const all = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    servedZones = { key, zones: all.filter((tz) => fractionalInstant(state, anchor, tz) === null) };
  }
  if (beyondHourTier({ ...state, tz: "UTC" }, anchor, oldestHour(dashboard.health))) return [...new Set(["UTC", state.tz])];
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const first = fractionalInstant(state, anchor, browserZone) === null ? ["UTC", browserZone] : ["UTC"];
  return [...new Set([...first, state.tz, ...servedZones.zones])];
}

// Why the API would refuse the view's zone, as the notice says it; "" when it would not.
export function zoneRefusal(state, anchor) {
  if (state.tz !== "UTC" && beyondHourTier(state, anchor, oldestHour(dashboard.health))) {
    // Local days are made of UTC hours, which Redis keeps only for the newest days (the hour tier).
    return `Days in ${state.tz} need hours the API keeps only since ${dashboard.health.oldest_hour}; older data is kept as UTC days. Showing UTC.`;
  }
  const at = fractionalInstant(state, anchor, state.tz);
  if (at === null) return "";
  const offset = `UTC${utcOffset(state.tz, at)}`;
  const why = "not a whole number of hours from UTC; Tally's buckets start at whole UTC hours";
  return `${state.tz} is ${offset}, ${why}. Showing UTC.`;
}
