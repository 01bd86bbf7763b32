/* A time zone's offset from UTC at an instant, from the browser's Intl data (no zone tables here). */

export function validZone(tz) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

// tz's offset from UTC at an instant, as "+05:30". (format() and a regex: three times faster than
// formatToParts, which matters when ~400 zones are checked over a range.)
const offsetFormats = new Map();
export function utcOffset(tz, ms) {
  if (!offsetFormats.has(tz)) {
    offsetFormats.set(tz, new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "longOffset" }));
  }
  const match = /GMT([+-]\d{2}:\d{2})/.exec(offsetFormats.get(tz).format(ms));
  return match ? match[1] : "+00:00"; // plain "GMT" is UTC itself
}

export function offsetMinutes(tz, ms) {
  const offset = utcOffset(tz, ms);
  return (offset[0] === "-" ? -1 : 1) * (60 * Number(offset.slice(1, 3)) + Number(offset.slice(4, 6)));
}

// The calendar date (YYYY-MM-DD) of an instant in tz.
export function localDate(ms, tz) {
  return new Date(ms + offsetMinutes(tz, ms) * 60_000).toISOString().slice(0, 10);
}

// The instant a request bound names: an ISO hour, or a date meaning its midnight in tz (as the API reads it).
export function boundInstant(bound, tz) {
  if (bound.includes("T")) return Date.parse(bound);
  const utcMidnight = Date.parse(`${bound}T00:00:00Z`);
  return utcMidnight - offsetMinutes(tz, utcMidnight) * 60_000;
}
