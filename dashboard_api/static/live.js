/* Live updates: the page follows the publish events and asks again for exactly the panels they touch.
 *
 * While the event stream is open nothing is polled; when it is not (refused, dropped, an API without
 * /v1/events) dashboard.js polls /health as before, and the stream is tried again with a growing pause.
 * Events are applied one batch at a time, after any view being drawn: a `reset` (events were lost),
 * or a publish that moved the newest hour (every range ends there), redraws the whole view; any other
 * event asks for the panels it touches (touches.js) and leaves the rest as they are.
 *
 * dashboard.live (window.tallyDashboard.live) says what happened, for the badge and the browser test.
 */

import { api, dataChanged } from "./api.js";
import { follow } from "./events.js";
import { showProblem } from "./notices.js";
import { $, dashboard, superseded } from "./state.js";
import { mergeEvents, touches } from "./touches.js";

const OPEN_WAIT_MS = 3000; // how long the first view waits for the stream to open (so no publish falls between)
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

dashboard.live = {
  status: "connecting", // live | polling (the stream is not open) | connecting
  why: "",
  updated: null, // when the page last applied a change (ISO), shown as "updated HH:MM" in local time
  applied: 0, // events applied
  batches: 0, // times the page refreshed for events (or for a poll that saw a publish)
  refreshed: [], // the panels the last batch asked for again ("chart:orders", "card:revenue", "view")
};

let view = null; // what dashboard.js lends: see followEvents
let stream = null;
let queue = [];
let draining = false;
let wasLive = false;

// view: { panels(): [{key, element, reads, reload(): Promise}], redraw(): Promise (the whole view),
// health(health): Promise<boolean> (true: the whole view was redrawn), settled(): Promise, drawn(): bool,
// polling(on) }. (Re)starts following with the token now stored; resolves when the stream is open or has
// failed, or after OPEN_WAIT_MS.
export function followEvents(lent, since = "") {
  view = lent;
  if (stream) stream.stop();
  wasLive = false;
  setStatus("connecting", "");
  stream = follow({ onEvent, onStatus, since });
  const waited = new Promise((resolve) => window.setTimeout(() => resolve(false), OPEN_WAIT_MS));
  return Promise.race([stream.opened, waited]);
}

// A page left (or put in the back-forward cache) lets its stream go: a frozen page holding one open
// would keep one of the browser's few connections to the API. Shown again, it resumes from its last event.
window.addEventListener("pagehide", () => {
  if (stream) stream.stop();
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted && stream && view) followEvents(view, stream.lastId());
});

function onStatus(status, why) {
  if (status === "live") {
    // Opened without an id to resume from, after a view was drawn: what was published meanwhile is unknown.
    if (why === "opened" && view.drawn()) enqueue({ type: "reset", reason: "the event stream opened again" });
    wasLive = true;
    view.polling(false);
    return setStatus("live", why);
  }
  if (wasLive || dashboard.live.status === "connecting") view.polling(true, wasLive);
  wasLive = false;
  setStatus("polling", why);
}

function onEvent(type, data) {
  enqueue({ ...data, type });
}

function enqueue(event) {
  queue.push(event);
  if (!draining) drain();
}

async function drain() {
  draining = true;
  try {
    while (queue.length) {
      await view.settled();
      const batch = queue;
      queue = [];
      await apply(batch);
    }
  } finally {
    draining = false;
  }
}

async function apply(batch) {
  dataChanged();
  const count = batch.filter((e) => e.id !== undefined).length;
  if (batch.some((e) => e.type === "reset")) {
    await view.redraw();
    return applied(count, ["view"]);
  }
  const health = await api("health").catch(() => null);
  if (health && (await view.health(health))) return applied(count, ["view"]);
  const event = mergeEvents(batch);
  const targets = view.panels().filter((panel) => touches(event, panel.reads));
  if (!targets.length) return applied(count, []);
  const generation = dashboard.generation;
  dashboard.ready = false;
  targets.forEach((panel) => panel.element && panel.element.classList.add("loading"));
  const results = await Promise.allSettled(targets.map((panel) => panel.reload()));
  targets.forEach((panel) => panel.element && panel.element.classList.remove("loading"));
  // A new view is being drawn meanwhile: it reads the new data anyway, and says when it is ready.
  if (superseded(generation)) return applied(count, targets.map((panel) => panel.key));
  const failure = results.find((r) => r.status === "rejected");
  if (failure) showProblem(failure.reason);
  dashboard.ready = true;
  applied(count, targets.map((panel) => panel.key));
}

function applied(count, refreshed) {
  Object.assign(dashboard.live, { applied: dashboard.live.applied + count, refreshed });
  markUpdated();
}

// The page's numbers changed now (an event, or a poll that saw a publish).
export function markUpdated() {
  dashboard.live.updated = new Date().toISOString();
  dashboard.live.batches += 1;
  renderLive();
}

function setStatus(status, why) {
  Object.assign(dashboard.live, { status, why });
  renderLive();
}

function renderLive() {
  const badge = $("live");
  const { status, why, updated } = dashboard.live;
  badge.dataset.status = status;
  const text = { live: "Live", polling: "Checking every minute", connecting: "Connecting…" }[status];
  badge.textContent = updated ? `${text} · updated ${CLOCK.format(new Date(updated))}` : text;
  badge.title =
    status === "live"
      ? "Following the API's publish events (GET /v1/events): a publish redraws what it changed."
      : `Live updates are unavailable (${why || "not connected"}): /health is polled instead.`;
}

// /health as it would answer now, `seconds` after it answered: the lag grows, and past the API's own
// limit (max_lag_seconds) it is stale. For the badge while events replace polling.
export function agedHealth(health, seconds) {
  if (!health || typeof health.lag_seconds !== "number") return health;
  const lag = health.lag_seconds + seconds;
  return { ...health, lag_seconds: lag, status: lag > health.max_lag_seconds ? "stale" : health.status };
}
