/* The publish events (GET /v1/events, server-sent events) read with fetch() and parsed here.
 *
 * Not EventSource: it cannot send the Authorization header an API with TALLY_API_TOKEN needs, so one
 * code path reads the stream with fetch and a reader, with or without a token. Each event is passed on
 * with its JSON data; a dropped stream is opened again after a pause that grows while attempts fail,
 * sending Last-Event-ID, so the API replays what was missed (or sends `reset`: reload everything).
 */

import { authHeaders } from "./api.js";

const SILENCE_MS = 45_000; // the API sends a keep-alive comment every 15 s: three missed, the line is dead
const MAX_PAUSE_MS = 60_000;

// The complete frames at the start of `text` (up to its last blank line) and what is left of it: a frame
// cut by the end of a chunk waits for the next one. A frame is {id, event, data, retry, comment}: fields
// given once are strings (id, event, retry as a number), data lines are joined with "\n" as EventSource
// joins them; a frame of comments only has comment: true. As the SSE specification reads them: lines end
// with \n, \r\n or \r; a field's value loses one leading space; unknown fields are ignored.
export function parseSse(text) {
  const normal = text.replace(/\r\n?/g, "\n");
  // A \r at the very end may be the first half of \r\n: it stays for the next chunk.
  const cut = text.endsWith("\r") ? normal.length - 1 : normal.length;
  const end = cut < 2 ? -1 : normal.lastIndexOf("\n\n", cut - 2);
  if (end < 0) return { frames: [], rest: text };
  const frames = [];
  for (const block of normal.slice(0, end).split("\n\n")) {
    const frame = parseBlock(block);
    if (frame) frames.push(frame);
  }
  // What follows the last blank line, line ends folded to \n (a trailing \r kept as it was).
  return { frames, rest: normal.slice(end + 2, cut) + (cut < normal.length ? "\r" : "") };
}

function parseBlock(block) {
  const frame = { id: undefined, event: "message", data: undefined, retry: undefined, comment: false };
  let any = false;
  for (const line of block.split("\n")) {
    if (line === "") continue;
    if (line.startsWith(":")) {
      frame.comment = true;
      any = true;
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    any = true;
    if (name === "data") frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`;
    else if (name === "event") frame.event = value;
    else if (name === "id" && !value.includes("\0")) frame.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) frame.retry = Number(value);
  }
  return any ? frame : null;
}

// The pause before attempt `failures` + 1 after a stream ended: `retry` (the API's `retry:`) after one
// that worked, then doubling to a minute; +-20% so that many pages do not come back at the same instant.
export function pauseBefore(failures, retry, random = Math.random) {
  const base = Math.min(retry * 2 ** Math.max(0, failures - 1), MAX_PAUSE_MS);
  return Math.round(base * (0.8 + 0.4 * random()));
}

// Follows GET /v1/events until stop(): onEvent(type, data) for each event, onStatus(status, detail) when
// the stream opens ("live"), drops or cannot be opened ("down", with why), or is refused for want of
// a token ("unauthorized": no retry until follow is called again). `opened` resolves once the first
// attempt is settled: true when the stream is open. `since`: the id of the last event already seen.
export function follow({ onEvent, onStatus, since = "" }) {
  let lastId = since;
  let retry = 3000;
  let failures = 0;
  let stopped = false;
  let controller = null;
  let settle;
  const opened = new Promise((resolve) => (settle = resolve));

  const run = async () => {
    while (!stopped) {
      const { live, why } = await readOnce();
      settle(live);
      if (stopped) return;
      if (why === "unauthorized") return onStatus("unauthorized", why);
      failures = live ? 1 : failures + 1;
      onStatus("down", why);
      await new Promise((resolve) => window.setTimeout(resolve, pauseBefore(failures, retry)));
    }
  };

  // One connection, until it ends: {live: whether it opened, why it ended}.
  const readOnce = async () => {
    controller = new AbortController();
    let live = false;
    let silence = 0;
    const listen = () => {
      window.clearTimeout(silence);
      silence = window.setTimeout(() => controller.abort(), SILENCE_MS);
    };
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (lastId) headers["Last-Event-ID"] = lastId;
      listen();
      const url = new URL("v1/events", document.baseURI);
      const response = await fetch(url, { headers, cache: "no-store", signal: controller.signal });
      if (response.status === 401) return { live, why: "unauthorized" };
      if (response.status === 400) lastId = ""; // an id this API does not know: start afresh (onStatus reloads)
      const type = response.headers.get("content-type") || "";
      if (!response.ok || !type.startsWith("text/event-stream")) return { live, why: `HTTP ${response.status}` };
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { live, why: "the stream ended" };
        listen();
        if (!live) {
          live = true;
          settle(true);
          onStatus("live", lastId ? "resumed" : "opened");
        }
        const { frames, rest } = parseSse(buffer + value);
        buffer = rest;
        for (const frame of frames) {
          if (frame.retry !== undefined) retry = frame.retry;
          if (frame.id !== undefined) lastId = frame.id;
          if (frame.data !== undefined) onEvent(frame.event, dataOf(frame.data));
        }
      }
    } catch (error) {
      return { live, why: stopped ? "stopped" : error.name === "AbortError" ? "silent too long" : error.message };
    } finally {
      window.clearTimeout(silence);
    }
  };

  run();
  return {
    opened,
    lastId: () => lastId,
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}

function dataOf(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { raw: text };
  }
}
