/* Tally dashboard: headline cards and time-series charts over the public HTTP API.
 *
 * Reads only GET /health, GET /v1/metrics, GET /v1/metrics/{name} and (for the filter
 * choices) GET /v1/metrics/{name}/values/{dimension}, like any other client. The view
 * (range, grain, tz, split, filters) lives in the query string, so a view is a link.
 * What is shown is also kept in window.tallyDashboard, which the browser test compares
 * with the API's own answers.
 *
 * Nulls stay nulls: a bucket with no computed hour is a gap in its chart and "—" on a
 * card, and a bucket that is not complete is shaded, never dropped or drawn as 0.
 */
(() => {
  "use strict";

  const RANGES = [
    { key: "1d", days: 1, label: "Last 24 hours", previous: "prior 24 h", grain: "hour" },
    { key: "7d", days: 7, label: "Last 7 days", previous: "prior 7 days", grain: "day" },
    { key: "30d", days: 30, label: "Last 30 days", previous: "prior 30 days", grain: "day" },
    { key: "90d", days: 90, label: "Last 90 days", previous: "prior 90 days", grain: "week" },
  ];
  const GRAINS = ["hour", "day", "week", "month"];
  const DEFAULTS = { range: "7d", grain: "day", tz: "UTC", groupBy: "" };
  const GROUP_LIMIT = 5; // with a split: the 5 largest series plus "other"
  const VALUES_LIMIT = 50; // filter choices offered per dimension
  const HEALTH_POLL_MS = 60_000;
  const HOUR_MS = 3_600_000;
  const DAY_MS = 24 * HOUR_MS;
  const TOKEN_KEY = "tally.apiToken";
  const PALETTE = ["#4f46e5", "#0e9384", "#dd2590", "#e8590c", "#2e90fa", "#7a5af8"];
  const OTHER_COLOR = "#98a2b3";
  const INCOMPLETE_FILL = "rgba(247, 144, 9, 0.13)";
  const PLOT_HEIGHT = 210;
  const INSTANT_FORMAT = {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  };
  // Tick steps for counts: 1, 2, 5, 10, 20, 50, ... (never half a unit).
  const WHOLE_INCREMENTS = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9].flatMap((p) => [p, 2 * p, 5 * p]);
  // uPlot's time-axis ticks, 24-hour and without US-style dates:
  // [tick step (s), format, rollover formats for year, month, day, hour, minute, second, mode 1 = append].
  const TIME_TICKS = [
    [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [3600 * 24 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600 * 24, "{MMM} {D}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
  ];

  const dashboard = {
    ready: false, // true once every card and chart of the current view is drawn (or failed)
    generation: 0,
    state: null,
    health: null,
    catalogue: [],
    headline: [], // metric names of the cards, in order: the spec's, from GET /v1/metrics
    cards: {},
    charts: {},
    problems: [],
    zoneNotice: "", // why the zone asked for is not shown; kept until the view changes
  };
  window.tallyDashboard = dashboard;

  const $ = (id) => document.getElementById(id);
  const dimensionValues = new Map(); // "dim|tz|start|end" -> [values, the most common first]

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // --- the API ---------------------------------------------------------------------

  async function api(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Accept: "application/json" };
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, { headers });
    } catch (err) {
      throw new ApiError(0, "network", `the API did not answer (${err.message})`);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (body && body.error) || {};
      const code = error.code || `http_${response.status}`;
      throw new ApiError(response.status, code, error.message || response.statusText);
    }
    return body;
  }

  function metricPath(name) {
    return `v1/metrics/${encodeURIComponent(name)}`;
  }

  let sessionToken = ""; // used when localStorage refuses (private mode)

  function storedToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || sessionToken;
    } catch {
      return sessionToken;
    }
  }

  function storeToken(token) {
    try {
      window.localStorage.setItem(TOKEN_KEY, token);
    } catch {
      // Storage refused (private mode): the token then lasts for this page only.
    }
    sessionToken = token;
  }

  // A link may carry ?token=...: keep it, then take it out of the address bar and history.
  function captureTokenFromUrl() {
    const params = new URLSearchParams(window.location.search);
    const token = params.get("token");
    if (token === null) return;
    storeToken(token);
    params.delete("token");
    const query = params.toString();
    window.history.replaceState(null, "", `${window.location.pathname}${query ? `?${query}` : ""}`);
  }

  // --- time ------------------------------------------------------------------------

  function isoHour(ms) {
    return new Date(ms).toISOString().replace(".000Z", "Z");
  }

  const dateFormats = new Map();
  function formatter(tz, options) {
    const key = `${tz}|${JSON.stringify(options)}`;
    if (!dateFormats.has(key)) dateFormats.set(key, new Intl.DateTimeFormat(undefined, { timeZone: tz, ...options }));
    return dateFormats.get(key);
  }

  function validZone(tz) {
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
  function utcOffset(tz, ms) {
    if (!offsetFormats.has(tz)) {
      offsetFormats.set(tz, new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "longOffset" }));
    }
    const match = /GMT([+-]\d{2}:\d{2})/.exec(offsetFormats.get(tz).format(ms));
    return match ? match[1] : "+00:00"; // plain "GMT" is UTC itself
  }

  function offsetMinutes(tz, ms) {
    const offset = utcOffset(tz, ms);
    return (offset[0] === "-" ? -1 : 1) * (60 * Number(offset.slice(1, 3)) + Number(offset.slice(4, 6)));
  }

  // The calendar date (YYYY-MM-DD) of an instant in tz.
  function localDate(ms, tz) {
    return new Date(ms + offsetMinutes(tz, ms) * 60_000).toISOString().slice(0, 10);
  }

  // The instant a chart bound names: an ISO hour, or a date meaning its midnight in tz.
  function boundInstant(bound, tz) {
    if (bound.includes("T")) return Date.parse(bound);
    const utcMidnight = Date.parse(`${bound}T00:00:00Z`);
    return utcMidnight - offsetMinutes(tz, utcMidnight) * 60_000;
  }

  // Calendar arithmetic on YYYY-MM-DD strings (no time zone involved).
  function shiftDate(date, { days = 0, months = 0 }) {
    const [y, m, d] = date.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1 + months, d + days)).toISOString().slice(0, 10);
  }

  function bucketStartDate(date, grain) {
    if (grain === "week") {
      const weekday = new Date(`${date}T00:00:00Z`).getUTCDay(); // 0 = Sunday; ISO weeks start Monday
      return shiftDate(date, { days: -((weekday + 6) % 7) });
    }
    if (grain === "month") return `${date.slice(0, 8)}01`;
    return date;
  }

  function nextBucketDate(date, grain) {
    if (grain === "week") return shiftDate(date, { days: 7 });
    if (grain === "month") return shiftDate(date, { months: 1 });
    return shiftDate(date, { days: 1 });
  }

  // The newest published hour ends at the anchor; every range ends there.
  function anchorOf(health) {
    return Date.parse(health.newest_hour) + HOUR_MS;
  }

  // Charts: the buckets of `grain` covering the range's days, up to the bucket holding the newest hour.
  function chartRange(state, anchor) {
    const { days } = rangeOf(state);
    if (state.grain === "hour") return { start: isoHour(anchor - days * DAY_MS), end: isoHour(anchor) };
    const newestDay = localDate(anchor - HOUR_MS, state.tz);
    const first = shiftDate(newestDay, { days: 1 - days });
    return {
      start: bucketStartDate(first, state.grain),
      end: nextBucketDate(bucketStartDate(newestDay, state.grain), state.grain),
    };
  }

  // Cards: the range's days ending at the anchor, and the same length just before (UTC hours,
  // so both periods are exactly N x 24 hours and adjacent in any time zone).
  function cardPeriods(state, anchor) {
    const span = rangeOf(state).days * DAY_MS;
    const period = (end) => ({ start: isoHour(end - HOUR_MS), end: isoHour(end) });
    return { current: period(anchor), previous: period(anchor - span) };
  }

  function rangeOf(state) {
    return RANGES.find((r) => r.key === state.range);
  }

  // --- time zones ------------------------------------------------------------------
  // Tally's buckets start at whole UTC hours, so the API refuses (400 unsupported_timezone) a zone
  // that is a fractional number of hours from UTC anywhere in a range: such zones are not offered.

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

  // UTC, the browser's zone and every Intl zone, less those the API refuses over this view's range.
  let servedZones = { key: "", zones: [] };
  function zones(state, anchor) {
    const key = [state.range, state.grain, anchor].join("|");
    if (servedZones.key !== key) {
      const all = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
      servedZones = { key, zones: all.filter((tz) => fractionalInstant(state, anchor, tz) === null) };
    }
    const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const first = fractionalInstant(state, anchor, browserZone) === null ? ["UTC", browserZone] : ["UTC"];
    return [...new Set([...first, state.tz, ...servedZones.zones])];
  }

  // A zone the API would refuse for this view (from a link, or kept across a range change) gives way
  // to UTC, for cards and charts alike, with one notice saying why.
  function servedZone(state, anchor) {
    const at = fractionalInstant(state, anchor, state.tz);
    if (at === null) return state;
    const offset = `UTC${utcOffset(state.tz, at)}`;
    const why = "not a whole number of hours from UTC; Tally's buckets start at whole UTC hours";
    return fallBackToUtc(state, `${state.tz} is ${offset}, ${why}. Showing UTC.`);
  }

  function fallBackToUtc(state, notice) {
    dashboard.zoneNotice = notice;
    dashboard.state = { ...state, tz: "UTC" };
    writeState(dashboard.state);
    return dashboard.state;
  }

  // --- numbers ---------------------------------------------------------------------

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function formatValue(value, unit) {
    if (!isNumber(value)) return "—";
    if (unit === "ratio") return `${(value * 100).toFixed(2)}%`;
    const digits = unit === "currency" || !Number.isInteger(value) ? 2 : 0;
    return value.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function formatAxis(value, unit) {
    if (!isNumber(value)) return "";
    if (unit === "ratio") return `${+(value * 100).toFixed(2)}%`;
    return value.toLocaleString(undefined, { notation: "compact", maximumFractionDigits: 1 });
  }

  // Change against the previous period: relative for amounts, percentage points for ratios.
  function change(current, previous, unit) {
    if (!isNumber(current) || !isNumber(previous)) return null;
    if (unit === "ratio") {
      const points = (current - previous) * 100;
      return { value: points, text: `${points >= 0 ? "+" : "−"}${Math.abs(points).toFixed(2)} pp` };
    }
    if (previous === 0) return null;
    const relative = (current - previous) / Math.abs(previous);
    return { value: relative, text: `${relative >= 0 ? "+" : "−"}${Math.abs(relative * 100).toFixed(1)}%` };
  }

  function formatDuration(seconds) {
    if (!isNumber(seconds)) return "unknown";
    const minutes = Math.max(0, Math.round(seconds / 60));
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} days`;
  }

  function title(metric) {
    const name = metric.name;
    return name.charAt(0).toUpperCase() + name.slice(1).replaceAll("_", " ");
  }

  // --- view state (the query string) -----------------------------------------------

  function dimensions() {
    const seen = [];
    for (const metric of dashboard.catalogue) {
      for (const dim of metric.dimensions) if (!seen.includes(dim)) seen.push(dim);
    }
    return seen;
  }

  function readState() {
    const params = new URLSearchParams(window.location.search);
    const range = RANGES.some((r) => r.key === params.get("range")) ? params.get("range") : DEFAULTS.range;
    const fallbackGrain = params.has("range") ? RANGES.find((r) => r.key === range).grain : DEFAULTS.grain;
    const grain = GRAINS.includes(params.get("grain")) ? params.get("grain") : fallbackGrain;
    const tz = params.get("tz") || DEFAULTS.tz;
    const dims = dimensions();
    const groupBy = dims.includes(params.get("group_by")) ? params.get("group_by") : DEFAULTS.groupBy;
    const filters = {};
    for (const dim of dims) {
      if (params.get(dim) && dim !== groupBy) filters[dim] = params.get(dim);
    }
    if (!validZone(tz)) {
      dashboard.zoneNotice = `Unknown time zone ${JSON.stringify(tz)}; showing UTC.`;
      return { range, grain, tz: "UTC", groupBy, filters };
    }
    return { range, grain, tz, groupBy, filters };
  }

  function writeState(state) {
    const params = new URLSearchParams();
    params.set("range", state.range);
    params.set("grain", state.grain);
    params.set("tz", state.tz);
    if (state.groupBy) params.set("group_by", state.groupBy);
    for (const [dim, value] of Object.entries(state.filters)) params.set(dim, value);
    window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
  }

  // --- controls --------------------------------------------------------------------

  function option(value, text, selected) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    element.selected = selected;
    return element;
  }

  function fillSelect(select, choices, selected) {
    select.replaceChildren(...choices.map(([value, text]) => option(value, text, value === selected)));
  }

  function renderControls(state) {
    fillSelect($("range"), RANGES.map((r) => [r.key, r.label]), state.range);
    fillSelect($("grain"), GRAINS.map((g) => [g, g.charAt(0).toUpperCase() + g.slice(1)]), state.grain);
    fillSelect($("tz"), [[state.tz, state.tz]], state.tz); // the zones on offer depend on the range: see render()
    const splits = dimensions().map((d) => [d, d.replaceAll("_", " ")]);
    fillSelect($("group-by"), [["", "Nothing"], ...splits], state.groupBy);
    renderFilters(state, {});
  }

  function renderFilters(state, valuesByDimension) {
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

  function bindControls() {
    const update = (change) => {
      const state = { ...dashboard.state, filters: { ...dashboard.state.filters }, ...change };
      // The API refuses a split and a filter on the same dimension.
      if (state.groupBy) delete state.filters[state.groupBy];
      dashboard.state = state;
      dashboard.zoneNotice = "";
      writeState(state);
      render();
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
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      storeToken($("token").value.trim());
      $("token").value = "";
      $("token-form").hidden = true;
      start();
    });
  }

  // --- notices and freshness -------------------------------------------------------

  function showNotice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  function showProblem(error) {
    dashboard.problems.push({ code: error.code, message: error.message });
    if (error.code === "unauthorized") {
      $("token-form").hidden = false;
      showNotice("This API needs a token (TALLY_API_TOKEN). Enter it below, or open the page with ?token=….");
    } else if (error.code === "cache_cold") {
      showNotice("Nothing is published yet: the cache is cold. Run the pipeline or `tally rehydrate`.");
    } else if (error.code === "redis_unavailable") {
      showNotice("The API cannot reach Redis right now; this page retries every minute.");
    } else {
      showNotice(`The API answered: ${error.message} (${error.code}).`);
    }
  }

  function renderPeriod(state, anchor) {
    const end = formatter(state.tz, INSTANT_FORMAT).format(new Date(anchor));
    $("period").textContent = `${rangeOf(state).label} to ${end} · charts by ${state.grain}`;
  }

  function renderFreshness(health, tz) {
    const badge = $("freshness");
    if (!health || !health.newest_hour) {
      badge.dataset.status = "cold";
      badge.textContent = "No data published yet";
      return;
    }
    const lag = health.lag_seconds;
    // The API's one freshness rule (TALLY_MAX_LAG_SECONDS), not a second one here.
    badge.dataset.status = health.status === "stale" ? "stale" : "fresh";
    badge.dataset.newestHour = health.newest_hour;
    badge.dataset.lagSeconds = String(lag);
    const newest = formatter(tz, INSTANT_FORMAT)
      .format(new Date(health.newest_hour));
    const pending = health.pending_hours.length;
    badge.textContent = `Newest hour ${newest} · lag ${formatDuration(lag)}`;
    if (pending) {
      const extra = document.createElement("span");
      extra.className = "pending";
      extra.textContent = ` · ${pending} hour${pending > 1 ? "s" : ""} being recomputed`;
      extra.title = health.pending_hours.join("\n");
      badge.append(extra);
    }
    badge.title = `Published ${health.published_at}`;
  }

  async function pollHealth() {
    try {
      const health = await api("health");
      const changed = !dashboard.health || health.newest_hour !== dashboard.health.newest_hour;
      dashboard.health = health;
      if (dashboard.state) renderFreshness(health, dashboard.state.tz);
      if (changed && dashboard.catalogue.length) render();
    } catch (error) {
      $("freshness").dataset.status = "stale";
      $("freshness").textContent = `API unreachable (${error.code})`;
    }
  }

  // --- cards -----------------------------------------------------------------------

  // One card per metric, since a card is found by its data-metric.
  function headlineMetrics() {
    return [...new Set(dashboard.headline)]
      .map((name) => dashboard.catalogue.find((m) => m.name === name))
      .filter(Boolean);
  }

  function cardElement(metric) {
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

  // Why a metric cannot be read with the current filters, if it cannot.
  function unsupportedFilter(metric, state) {
    return Object.keys(state.filters).find((dim) => !metric.dimensions.includes(dim));
  }

  // A view whose answers arrive after the user picked another must not draw over it.
  function superseded(generation) {
    return generation !== dashboard.generation;
  }

  async function loadCard(metric, state, anchor, generation) {
    const range = rangeOf(state);
    const card = document.querySelector(`.card[data-metric="${CSS.escape(metric.name)}"]`);
    const record = { metric: metric.name, value: null, previous: null, complete: false, queries: null };
    dashboard.cards[metric.name] = record;
    const missingFilter = unsupportedFilter(metric, state);
    let reason = null;
    if (missingFilter) reason = `not sliced by ${missingFilter}`;
    else if (!metric.grains.includes("hour") || metric.max_window_days < range.days) {
      reason = `not served over ${range.days} days`;
    }
    if (reason) {
      fillCard(card, metric, record, range, reason);
      return;
    }
    const periods = cardPeriods(state, anchor);
    const base = { grain: "hour", tz: "UTC", window: `${range.days}d`, ...state.filters };
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

  // --- charts ----------------------------------------------------------------------

  function chartMetrics() {
    const headline = headlineMetrics();
    return [...headline, ...dashboard.catalogue.filter((m) => !headline.includes(m))];
  }

  function panelElement(metric) {
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

  async function loadChart(metric, state, anchor, generation) {
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
    record.ts = body.series.length ? body.series[0].points.map((p) => p.ts) : [];
    if (!record.series.length) {
      return showMessage(plotBox, status, `No ${split || "data"} values in this range.`, record);
    }
    plotBox.replaceChildren();
    record.plot = new uPlot(plotOptions(metric, record, state, plotBox.clientWidth), plotData(record), plotBox);
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

  function plotData(record) {
    return [record.ts.map((ts) => Date.parse(ts) / 1000), ...record.series.map((s) => s.values)];
  }

  function statusLine(record) {
    const count = record.ts.length;
    const missing = record.ts.filter((_, i) => record.series.every((s) => s.values[i] === null)).length;
    const partial = incompleteBuckets(record).filter(Boolean).length;
    const parts = [`${count} bucket${count === 1 ? "" : "s"}`];
    if (partial) parts.push(`${partial} incomplete`);
    if (missing) parts.push(`${missing} without data`);
    if (record.asOf) parts.push(`published ${record.asOf.slice(0, 16).replace("T", " ")} UTC`);
    return parts.join(" · ");
  }

  // One colour per split value on every chart of a view, in the order the values first appear.
  const colors = new Map();
  function seriesColor(series) {
    if (series.other) return OTHER_COLOR;
    if (!colors.has(series.label)) colors.set(series.label, PALETTE[colors.size % PALETTE.length]);
    return colors.get(series.label);
  }

  function bucketText(seconds, state) {
    const date = new Date(seconds * 1000);
    const options = {
      hour: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
      day: { weekday: "short", month: "short", day: "numeric" },
      week: { month: "short", day: "numeric", year: "numeric" },
      month: { month: "long", year: "numeric" },
    }[state.grain];
    const text = formatter(state.tz, options).format(date);
    return state.grain === "week" ? `Week of ${text}` : text;
  }

  // A bucket is shaded when it has a value that may still change; a null bucket is a gap.
  function incompleteBuckets(record) {
    const complete = record.series[0].complete;
    return record.ts.map((_, i) => !complete[i] && record.series.some((s) => s.values[i] !== null));
  }

  function shadeIncomplete(u, flags) {
    const xs = u.data[0];
    if (!flags.some(Boolean)) return;
    const { ctx, bbox } = u;
    const edge = (i, j) => (xs[i] + xs[j]) / 2;
    ctx.save();
    ctx.fillStyle = INCOMPLETE_FILL;
    flags.forEach((shaded, i) => {
      if (!shaded) return;
      let left = bbox.left;
      let right = bbox.left + bbox.width;
      if (i > 0) left = Math.max(left, u.valToPos(edge(i - 1, i), "x", true));
      else if (xs.length > 1) left = Math.max(left, u.valToPos(2 * xs[0] - edge(0, 1), "x", true));
      if (i < xs.length - 1) right = Math.min(right, u.valToPos(edge(i, i + 1), "x", true));
      else if (xs.length > 1) right = Math.min(right, u.valToPos(2 * xs[i] - edge(i - 1, i), "x", true));
      ctx.fillRect(left, bbox.top, right - left, bbox.height);
    });
    ctx.restore();
  }

  function plotOptions(metric, record, state, width) {
    const flags = incompleteBuckets(record);
    const single = record.series.length === 1;
    const showPoints = record.ts.length <= 62;
    // Away from the cursor the legend shows the newest bucket that has a value.
    const valued = record.ts.map((_, i) => i).filter((i) => record.series.some((s) => s.values[i] !== null));
    const resting = valued.length ? valued[valued.length - 1] : record.ts.length - 1;
    return {
      width: Math.max(width, 240),
      height: PLOT_HEIGHT,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), state.tz),
      legend: { live: true },
      cursor: { points: { size: 8 } },
      scales: {
        x: { time: true, range: (u, min, max) => xRange(min, max, record.ts.length, state.grain) },
        y: {
          range: (u, min, max) => [0, uPlot.rangeNum(0, isNumber(max) && max > 0 ? max : 1, 0.1, true)[1]],
        },
      },
      series: [
        {
          label: "Bucket",
          value: (u, seconds, s, idx) => {
            const i = idx ?? resting;
            return `${bucketText(u.data[0][i], state)}${flags[i] ? " (incomplete)" : ""}`;
          },
        },
        ...record.series.map((s) => ({
          label: s.label,
          stroke: seriesColor(s),
          fill: single ? `${seriesColor(s)}14` : undefined,
          width: 2,
          spanGaps: false,
          points: { show: showPoints, size: 5, fill: "#ffffff" },
          value: (u, v, sidx, idx) => formatValue(u.data[sidx][idx ?? resting], metric.unit),
        })),
      ],
      axes: [
        {
          stroke: "#667085",
          grid: { stroke: "#eef0f4", width: 1 },
          ticks: { stroke: "#e4e7ec", width: 1 },
          ...timeTicks(state),
        },
        {
          stroke: "#667085",
          size: 60,
          grid: { stroke: "#eef0f4", width: 1 },
          ticks: { show: false },
          values: (u, splits) => splits.map((v) => formatAxis(v, metric.unit)),
          // Counts have whole-number ticks.
          ...(metric.kind === "count" || metric.kind === "count_distinct" ? { incrs: WHOLE_INCREMENTS } : {}),
        },
      ],
      hooks: { drawClear: [(u) => shadeIncomplete(u, flags)] },
    };
  }

  // Day, week and month buckets get half a bucket of room at each end, so the first and last are not cut.
  function xRange(min, max, count, grain) {
    if (min == null || max == null) return [min, max];
    const step = count > 1 ? (max - min) / (count - 1) : 86400;
    const pad = grain === "hour" && count > 1 ? 0 : step / 2;
    return [min - pad, max + pad];
  }

  // Hours and days: uPlot's own tick spacing, 24-hour. Weeks and months: one tick per bucket (or every k-th).
  function timeTicks(state) {
    if (state.grain === "hour" || state.grain === "day") return { values: TIME_TICKS };
    const options = state.grain === "month" ? { month: "short", year: "numeric" } : { month: "short", day: "numeric" };
    const format = formatter(state.tz, options);
    return {
      splits: (u) => {
        const xs = u.data[0];
        const stride = Math.max(1, Math.ceil((xs.length * 64) / Math.max(u.bbox.width / devicePixelRatio, 1)));
        return xs.filter((_, i) => (xs.length - 1 - i) % stride === 0);
      },
      values: (u, splits) => splits.map((seconds) => format.format(new Date(seconds * 1000))),
    };
  }

  function resizeCharts() {
    for (const record of Object.values(dashboard.charts)) {
      if (!record.plot) continue;
      const box = record.plot.root.parentElement;
      record.plot.setSize({ width: Math.max(box.clientWidth, 240), height: PLOT_HEIGHT });
    }
  }

  // --- filter choices ----------------------------------------------------------------

  // The values each dimension takes in the chart range, the most common first: the values endpoint
  // of the first metric that has the dimension (its counts are that metric's over the range).
  async function loadDimensionValues(state, anchor) {
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

  // --- one view ------------------------------------------------------------------

  function layout() {
    $("cards").replaceChildren(...headlineMetrics().map(cardElement));
    $("charts").replaceChildren(...chartMetrics().map(panelElement));
  }

  async function render() {
    const generation = ++dashboard.generation;
    dashboard.ready = false;
    document.body.dataset.state = "loading";
    dashboard.problems = [];
    if (!dashboard.health.newest_hour) {
      renderFreshness(dashboard.health, dashboard.state.tz);
      showNotice("Nothing is published yet: the cache is cold. Run the pipeline or `tally rehydrate`.");
      return finish(generation);
    }
    const anchor = anchorOf(dashboard.health);
    const state = servedZone(dashboard.state, anchor);
    showNotice(dashboard.zoneNotice);
    renderFreshness(dashboard.health, state.tz);
    fillSelect($("tz"), zones(state, anchor).map((z) => [z, z]), state.tz);
    renderPeriod(state, anchor);
    colors.clear();
    document.querySelectorAll(".card, .panel").forEach((el) => el.classList.add("loading"));
    const work = [
      ...headlineMetrics().map((m) => loadCard(m, state, anchor, generation)),
      ...chartMetrics().map((m) => loadChart(m, state, anchor, generation)),
    ];
    const values = loadDimensionValues(state, anchor);
    const results = await Promise.allSettled(work);
    if (superseded(generation)) return;
    const refused = results.find((r) => r.status === "rejected" && r.reason.code === "unsupported_timezone");
    if (refused && state.tz !== "UTC") {
      fallBackToUtc(state, `The API refused time zone ${state.tz}: ${refused.reason.message}. Showing UTC.`);
      return render();
    }
    document.querySelectorAll(".card, .panel").forEach((el) => el.classList.remove("loading"));
    const failure = results.find((r) => r.status === "rejected");
    if (failure) showProblem(failure.reason);
    renderFilters(state, await values);
    finish(generation);
  }

  function finish(generation) {
    if (superseded(generation)) return;
    dashboard.ready = true;
    document.body.dataset.state = "ready";
  }

  // /health is open even when the API needs a token, so freshness shows before anything else.
  async function start() {
    const generation = ++dashboard.generation;
    dashboard.ready = false;
    dashboard.problems = [];
    showNotice("");
    try {
      dashboard.health = await api("health");
      renderFreshness(dashboard.health, zoneFromUrl());
      const listing = await api("v1/metrics");
      dashboard.catalogue = listing.metrics;
      dashboard.headline = listing.cards;
    } catch (error) {
      if (!dashboard.health) {
        $("freshness").dataset.status = "stale";
        $("freshness").textContent = `Unavailable (${error.code})`;
      }
      showProblem(error);
      return finish(generation);
    }
    dashboard.state = readState();
    writeState(dashboard.state);
    renderControls(dashboard.state);
    layout();
    $("controls").hidden = false;
    $("period-row").hidden = false;
    await render();
  }

  function zoneFromUrl() {
    const tz = new URLSearchParams(window.location.search).get("tz");
    return tz && validZone(tz) ? tz : DEFAULTS.tz;
  }

  function debounce(fn, ms) {
    let timer = 0;
    return () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(fn, ms);
    };
  }

  captureTokenFromUrl();
  bindControls();
  window.addEventListener("resize", debounce(resizeCharts, 150));
  // Every minute: follow new publishes, or retry a start that failed (not while a token is asked for).
  window.setInterval(() => {
    if (dashboard.catalogue.length) pollHealth();
    else if ($("token-form").hidden) start();
  }, HEALTH_POLL_MS);
  start();
})();
