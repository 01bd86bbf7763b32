/* The ranges a view offers, and the start/end its cards and charts ask the API for.
 *
 * Every range ends at the anchor, the end of the newest published hour (GET /health). Bucket
 * boundaries are the API's: a chart draws the points' ts as answered, never buckets computed here.
 */

import { boundInstant, localDate } from "./tz.js";

export const RANGES = [
  { key: "1d", days: 1, label: "Last 24 hours", previous: "prior 24 h", grain: "hour" },
  { key: "7d", days: 7, label: "Last 7 days", previous: "prior 7 days", grain: "day" },
  { key: "30d", days: 30, label: "Last 30 days", previous: "prior 30 days", grain: "day" },
  { key: "90d", days: 90, label: "Last 90 days", previous: "prior 90 days", grain: "week" },
];
export const GRAINS = ["hour", "day", "week", "month"];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export function rangeOf(state) {
  return RANGES.find((r) => r.key === state.range);
}

export function isoHour(ms) {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

export function anchorOf(health) {
  return Date.parse(health.newest_hour) + HOUR_MS;
}

// The oldest hour the API serves at hour grain (GET /health), as ms; null when hours are kept forever.
export function oldestHour(health) {
  return health && health.oldest_hour ? Date.parse(health.oldest_hour) : null;
}

// Cards: the range's days ending at the anchor, and the same length just before (UTC hours,
// so both periods are exactly N x 24 hours and adjacent in any time zone). The API's window=Nd
// sums the N days before each one-hour bucket, so no calendar is needed here. When the earlier
// period reaches back beyond the hours Redis keeps, both are whole UTC days instead (the N days
// ending at the last UTC midnight, and the N before): older hours live on only in their days.
export function cardPeriods(state, anchor, oldest = null) {
  const days = rangeOf(state).days;
  const span = days * DAY_MS;
  if (oldest !== null && anchor - 2 * span < oldest) {
    const lastMidnight = localDate(anchor, "UTC");
    const dayPeriod = (end) => ({ grain: "day", start: shiftDays(end, -1), end });
    return { current: dayPeriod(lastMidnight), previous: dayPeriod(shiftDays(lastMidnight, -days)) };
  }
  const period = (end) => ({ grain: "hour", start: isoHour(end - HOUR_MS), end: isoHour(end) });
  return { current: period(anchor), previous: period(anchor - span) };
}

// Whether the view's charts would need hours the API no longer keeps (see oldestHour).
export function beyondHourTier(state, anchor, oldest) {
  if (oldest === null) return false;
  const { start } = chartRange(state, anchor);
  const first = state.grain === "hour" ? Date.parse(start) : boundInstant(start, state.tz);
  return first < oldest;
}

// Days that take any bucket's start into the next bucket (months have at most 31), whose start
// bucketStart then finds: the end of a range without a second calendar rule.
const LONGEST_BUCKET_DAYS = { day: 1, week: 7, month: 31 };

// Charts: the buckets of `grain` covering the range's days in tz, up to the bucket holding the newest
// hour. Hours need no calendar; day, week and month bounds are local dates, which the API reads as
// their midnights in tz.
export function chartRange(state, anchor) {
  const { days } = rangeOf(state);
  if (state.grain === "hour") return { start: isoHour(anchor - days * DAY_MS), end: isoHour(anchor) };
  const newestDay = localDate(anchor - HOUR_MS, state.tz);
  const newestBucket = bucketStart(newestDay, state.grain);
  return {
    start: bucketStart(shiftDays(newestDay, 1 - days), state.grain),
    end: bucketStart(shiftDays(newestBucket, LONGEST_BUCKET_DAYS[state.grain]), state.grain),
  };
}

// Why the page knows where a week or a month starts at all: the API refuses a start or end that does
// not begin a bucket (400 bad_range) and has no call that names the buckets covering some days, so a
// request must itself name a Monday (ISO weeks) or the first of a month. This is the only copy of
// dashboard_api/calendar.py's rule here (tests/test_dashboard_page.py checks the API accepts what it gives).
function bucketStart(date, grain) {
  if (grain === "week") return shiftDays(date, -((new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7));
  if (grain === "month") return `${date.slice(0, 8)}01`;
  return date;
}

// Date arithmetic on YYYY-MM-DD strings (no time zone involved).
function shiftDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}
