/* Tally dashboard: headline cards, a retention heat map, a funnel and time-series charts over the
 * public HTTP API.
 *
 * The page's entry module (index.html loads it with <script type="module">; the browser loads the
 * modules it imports as they are, no build step). Reads only GET /health, GET /v1/metrics,
 * GET /v1/metrics/{name}, GET /v1/retention, GET /v1/funnel, GET /v1/events and (for the filter
 * choices) GET /v1/metrics/{name}/values/{dimension}, like any other client. The view (range, grain, tz, split, filters) lives in the query string,
 * so a view is a link. What is shown is also kept in window.tallyDashboard (state.js), which the
 * browser test compares with the API's own answers.
 *
 * Nulls stay nulls: a bucket with no computed hour is a gap in its chart and "—" on a
 * card, and a bucket that is not complete is shaded, never dropped or drawn as 0.
 *
 * This module draws one view: the freshness badge, the pickers, then every card and chart at
 * once, and a zone the API refuses gives way to UTC. It then follows GET /v1/events (live.js), which
 * asks again for the panels a publish touches; while the events cannot be followed, it polls /health
 * every minute (?poll=<seconds> for another period) and redraws the view when the API published.
 */

import { api, captureTokenFromUrl, dataChanged, storeToken } from "./api.js";
import { cardElement, loadCard } from "./cards.js";
import { resetColors } from "./chart.js";
import { renderFreshness, renderPeriod, showColdCache, showNotice, showProblem, showUnreachable } from "./notices.js";
import { funnelElement, funnelSteps, loadFunnel } from "./funnel.js";
import { agedHealth, followEvents, markUpdated } from "./live.js";
import { loadChart, panelElement, redrawChart, resizeCharts } from "./panels.js";
import { bindQuantilePickers } from "./percentiles.js";
import { bindControls, fillSelect, loadDimensionValues, renderControls, renderFilters } from "./pickers.js";
import { viewPanels } from "./targets.js";
import { anchorOf, beyondHourTier, oldestHour } from "./ranges.js";
import { loadRetention, retentionElement, retentionMetrics } from "./retention.js";
import {
  $,
  chartMetrics,
  dashboard,
  fallBackToUtc,
  headlineMetrics,
  readState,
  superseded,
  writeState,
  zoneFromUrl,
} from "./state.js";
import { offeredZones, zoneRefusal } from "./zones.js";

const HEALTH_POLL_MS = 1000 * (Number(new URLSearchParams(window.location.search).get("poll")) || 60);

// The theta metrics the retention and funnel panels read, from the catalogue (null / [] hide them).
const sketchPanels = { retention: null, funnel: [] };

function layout() {
  $("cards").replaceChildren(...headlineMetrics().map(cardElement));
  sketchPanels.retention = retentionMetrics(dashboard.catalogue);
  sketchPanels.funnel = funnelSteps(dashboard.catalogue, sketchPanels.retention);
  $("sketches").replaceChildren(
    ...(sketchPanels.retention ? [retentionElement(sketchPanels.retention)] : []),
    ...(sketchPanels.funnel.length ? [funnelElement(sketchPanels.funnel)] : []),
  );
  $("sketches").hidden = !$("sketches").children.length;
  $("charts").replaceChildren(...chartMetrics().map(panelElement));
}

// A zone the API would refuse for this view (from a link, or kept across a range change) gives way
// to UTC before anything is asked in it.
function servedState(state, anchor) {
  const oldest = oldestHour(dashboard.health);
  if (state.grain === "hour" && beyondHourTier(state, anchor, oldest)) {
    // Hours older than the hour tier live on only in their days: offer those instead.
    state = { ...state, grain: "day" };
    dashboard.state = state;
    writeState(state);
    dashboard.zoneNotice = `Hours are kept since ${dashboard.health.oldest_hour} only; showing days.`;
  }
  const refusal = zoneRefusal(state, anchor);
  return refusal ? fallBackToUtc(state, refusal) : state;
}

// Hour grain is offered only while the view's range lies inside the hours the API keeps.
function offerGrains(state, anchor) {
  const hour = $("grain").querySelector('option[value="hour"]');
  if (hour) hour.disabled = beyondHourTier({ ...state, grain: "hour" }, anchor, oldestHour(dashboard.health));
  $("grain").value = state.grain;
}

// The view being drawn (live.js applies events once it is), and whether one ever was.
let drawing = Promise.resolve();
let drawnOnce = false;
function render() {
  drawnOnce = true;
  drawing = drawView();
  return drawing;
}

async function settled() {
  for (let current = null; current !== drawing; ) {
    current = drawing;
    await current;
  }
}

async function drawView() {
  const generation = ++dashboard.generation;
  dashboard.ready = false;
  document.body.dataset.state = "loading";
  dashboard.problems = [];
  if (!dashboard.health.newest_hour) {
    renderFreshness(dashboard.health, dashboard.state.tz);
    showColdCache();
    return finish(generation);
  }
  const anchor = anchorOf(dashboard.health);
  const state = servedState(dashboard.state, anchor);
  showNotice(dashboard.zoneNotice);
  renderFreshness(dashboard.health, state.tz);
  fillSelect($("tz"), offeredZones(state, anchor).map((z) => [z, z]), state.tz);
  offerGrains(state, anchor);
  renderPeriod(state, anchor);
  resetColors();
  document.querySelectorAll(".card, .panel").forEach((el) => el.classList.add("loading"));
  const work = [
    ...headlineMetrics().map((m) => loadCard(m, state, anchor, generation)),
    ...(sketchPanels.retention ? [loadRetention(sketchPanels.retention, state, anchor, generation)] : []),
    ...(sketchPanels.funnel.length ? [loadFunnel(sketchPanels.funnel, state, anchor, generation)] : []),
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
  drawnOnce = false;
  // Opened before anything is read, so that no publish falls between what is drawn and what is heard.
  const following = followEvents(liveView);
  try {
    setHealth(await api("health"));
    renderFreshness(dashboard.health, zoneFromUrl());
    const listing = await api("v1/metrics");
    dashboard.catalogue = listing.metrics;
    dashboard.headline = listing.cards;
  } catch (error) {
    if (!dashboard.health) showUnreachable("Unavailable", error);
    showProblem(error);
    return finish(generation);
  }
  dashboard.state = readState();
  writeState(dashboard.state);
  renderControls(dashboard.state);
  layout();
  $("controls").hidden = false;
  $("period-row").hidden = false;
  await following;
  await render();
}

let healthAt = 0; // when dashboard.health was answered (performance.now())
function setHealth(health) {
  dashboard.health = health;
  healthAt = performance.now();
}

// What /health says changed since it was last read: the newest hour (every range ends there), or any
// publish or pending mark (when events are not followed, the whole view is then asked for again).
function healthMoved(health, anyPublish) {
  const before = dashboard.health;
  if (!before || health.newest_hour !== before.newest_hour) return true;
  const marks = (h) => (h.pending_hours || []).join();
  return anyPublish && (health.published_at !== before.published_at || marks(health) !== marks(before));
}

async function pollHealth() {
  try {
    const health = await api("health");
    const moved = healthMoved(health, true);
    setHealth(health);
    if (dashboard.state) renderFreshness(health, dashboard.state.tz);
    if (moved && dashboard.catalogue.length) {
      dataChanged();
      markUpdated();
      render();
    }
  } catch (error) {
    showUnreachable("API unreachable", error);
  }
}

// What live.js may do to the page.
const liveView = {
  panels: () => viewPanels(sketchPanels),
  redraw: () => (dashboard.catalogue.length ? render() : start()),
  settled,
  drawn: () => drawnOnce,
  async health(health) {
    const moved = healthMoved(health, false);
    setHealth(health);
    if (dashboard.state) renderFreshness(health, dashboard.state.tz);
    if (!moved || !dashboard.catalogue.length) return false;
    await render();
    return true;
  },
  // The stream closed or failed: the timer below polls /health, and one poll goes now if it just dropped.
  polling(on, now) {
    if (on && now && dashboard.catalogue.length) pollHealth();
  },
};

function bindTokenForm() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    storeToken($("token").value.trim());
    $("token").value = "";
    $("token-form").hidden = true;
    start();
  });
}

function debounce(fn, ms) {
  let timer = 0;
  return () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(fn, ms);
  };
}

captureTokenFromUrl();
bindControls(render);
bindQuantilePickers($("charts"), redrawChart);
bindTokenForm();
window.addEventListener("resize", debounce(resizeCharts, 150));
// Every minute: retry a start that failed (not while a token is asked for); follow new publishes by
// polling /health while events are not followed; while they are, only age the badge's lag (no request).
window.setInterval(() => {
  if (!dashboard.catalogue.length) {
    if ($("token-form").hidden) start();
  } else if (dashboard.live.status !== "live") {
    pollHealth();
  } else if (dashboard.state) {
    renderFreshness(agedHealth(dashboard.health, (performance.now() - healthAt) / 1000), dashboard.state.tz);
  }
}, HEALTH_POLL_MS);
start();
