/* Numbers, changes, durations and instants as the page writes them. Nulls stay nulls: "—". */

// An instant with its zone's abbreviation: the newest hour, the end of a range.
export const INSTANT_FORMAT = {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZoneName: "short",
};

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

// Intl.DateTimeFormat is slow to build and the charts format every bucket: one per zone and options.
const dateFormats = new Map();
export function formatter(tz, options) {
  const key = `${tz}|${JSON.stringify(options)}`;
  if (!dateFormats.has(key)) dateFormats.set(key, new Intl.DateTimeFormat(undefined, { timeZone: tz, ...options }));
  return dateFormats.get(key);
}

export function formatValue(value, unit) {
  if (!isNumber(value)) return "—";
  if (unit === "ratio") return `${(value * 100).toFixed(2)}%`;
  const digits = unit === "currency" || !Number.isInteger(value) ? 2 : 0;
  return value.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// A share (0.3695) as the page writes it: "37.0%".
export function formatPercent(rate) {
  return isNumber(rate) ? `${(rate * 100).toFixed(1)}%` : "—";
}

export function formatAxis(value, unit) {
  if (!isNumber(value)) return "";
  if (unit === "ratio") return `${+(value * 100).toFixed(2)}%`;
  return value.toLocaleString(undefined, { notation: "compact", maximumFractionDigits: 1 });
}

// Change against the previous period: relative for amounts, percentage points for ratios.
export function change(current, previous, unit) {
  if (!isNumber(current) || !isNumber(previous)) return null;
  if (unit === "ratio") {
    const points = (current - previous) * 100;
    return { value: points, text: `${points >= 0 ? "+" : "−"}${Math.abs(points).toFixed(2)} pp` };
  }
  if (previous === 0) return null;
  const relative = (current - previous) / Math.abs(previous);
  return { value: relative, text: `${relative >= 0 ? "+" : "−"}${Math.abs(relative * 100).toFixed(1)}%` };
}

export function formatDuration(seconds) {
  if (!isNumber(seconds)) return "unknown";
  const minutes = Math.max(0, Math.round(seconds / 60));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days`;
}

export function title(metric) {
  const name = metric.name;
  return name.charAt(0).toUpperCase() + name.slice(1).replaceAll("_", " ");
}
