/* The public HTTP API as the page reads it: one GET helper, its errors, and the API token.
 *
 * Conditional requests need little code here: the API answers with an ETag and a Cache-Control that
 * lasts until its next expected publish, and fetch's default cache mode keeps those answers and, once
 * stale, revalidates them with If-None-Match (a 304 arrives here as the stored body). A publish the
 * page hears of (an event, or a poll of /health) makes every answer kept before it suspect:
 * dataChanged() then has each URL not fetched since asked again with cache "no-cache" (a 304 if
 * that answer still holds), never taken from the cache as it is.
 */

const TOKEN_KEY = "tally.apiToken";
let changedAt = 0; // when the page last heard the API's data changed (performance.now())
const fetchedAt = new Map(); // url -> when it was last fetched (performance.now())

export function dataChanged() {
  changedAt = performance.now();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// GET path (relative to the page, so a prefix the API is mounted under is kept) with the
// params that have a value; the body, or an ApiError with the API's own code.
export async function api(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json", ...authHeaders() };
  const cache = changedAt && !(fetchedAt.get(url.href) > changedAt) ? "no-cache" : "default";
  let response;
  try {
    fetchedAt.set(url.href, performance.now());
    response = await fetch(url, { headers, cache });
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

export function metricPath(name) {
  return `v1/metrics/${encodeURIComponent(name)}`;
}

let sessionToken = ""; // used when localStorage refuses (private mode)

export function authHeaders() {
  const token = storedToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function storedToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) || sessionToken;
  } catch {
    return sessionToken;
  }
}

export function storeToken(token) {
  try {
    window.localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage refused (private mode): the token then lasts for this page only.
  }
  sessionToken = token;
}

// A link may carry ?token=...: keep it, then take it out of the address bar and history.
export function captureTokenFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (token === null) return;
  storeToken(token);
  params.delete("token");
  const query = params.toString();
  window.history.replaceState(null, "", `${window.location.pathname}${query ? `?${query}` : ""}`);
}
