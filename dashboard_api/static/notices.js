/* What the page says about itself: the freshness badge, the period line and the one notice. */

import { formatDuration, formatter, INSTANT_FORMAT } from "./format.js";
import { rangeOf } from "./ranges.js";
import { $, dashboard } from "./state.js";

const COLD = "Nothing is published yet: the cache is cold. Run the pipeline or `tally rehydrate`.";

export function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

export function showColdCache() {
  showNotice(COLD);
}

// An ApiError the view could not draw around: kept in dashboard.problems, and said once.
export function showProblem(error) {
  dashboard.problems.push({ code: error.code, message: error.message });
  if (error.code === "unauthorized") {
    $("token-form").hidden = false;
    showNotice("This API needs a token (TALLY_API_TOKEN). Enter it below, or open the page with ?token=….");
  } else if (error.code === "cache_cold") {
    showNotice(COLD);
  } else if (error.code === "redis_unavailable") {
    showNotice("The API cannot reach Redis right now; this page retries every minute.");
  } else {
    showNotice(`The API answered: ${error.message} (${error.code}).`);
  }
}

export function renderPeriod(state, anchor) {
  const end = formatter(state.tz, INSTANT_FORMAT).format(new Date(anchor));
  $("period").textContent = `${rangeOf(state).label} to ${end} · charts by ${state.grain}`;
}

export function renderFreshness(health, tz) {
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
  const newest = formatter(tz, INSTANT_FORMAT).format(new Date(health.newest_hour));
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

// The badge when /health itself did not answer.
export function showUnreachable(prefix, error) {
  $("freshness").dataset.status = "stale";
  $("freshness").textContent = `${prefix} (${error.code})`;
}
