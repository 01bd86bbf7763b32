"""``GET /v1/events`` from a live `tally serve`: live delivery, replay, reset, filters, outages.

Publishes go through the production publisher (cache.publish, cache.rollback,
cache.freshness) into a real Redis; a real server streams them over HTTP and a
plain SSE reader (below, independent of tally.client) collects what arrives.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from bench.server import start_server, stop
from cache.freshness import mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api.event_hub import stream_id_key
from tests.conftest import TEST_PREFIX, TEST_REDIS_URL, delete_prefix
from tests.support.api import SwitchableProxy
from tests.support.builds import events_build, hour_build
from tests.support.net import free_port

H0 = datetime(2026, 11, 20, tzinfo=UTC)
OPTIONS = PublishOptions(superseded_ttl=60)
WAIT = 10.0  # seconds an expected frame may take to arrive


@dataclass
class Frame:
    event: str = "message"
    id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Listener:
    """Reads an SSE response in a thread: frames (and keep-alive comments) land on queues."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: queue.Queue[Frame] = queue.Queue()
        self.comments: queue.Queue[str] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._stop = threading.Event()
        self._opened = threading.Event()
        self.body = b""
        self.opening_id: str | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()
        assert self._opened.wait(WAIT), "the event stream did not open"
        assert self.status == 200, (self.status, self.body)

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5.0, read=None)) as response:
            self.status, self.content_type = response.status_code, response.headers.get("content-type", "")
            if self.status != 200:
                self.body = response.read()
                self._opened.set()
                return
            self._opened.set()
            frame = Frame()
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments.put(line)
                elif not line:
                    if frame.data:  # an id alone (the stream's first block) only moves Last-Event-ID
                        self.frames.put(frame)
                    elif frame.id:
                        self.opening_id = frame.id
                    frame = Frame()
                else:
                    name, _, value = line.partition(": ")
                    if name == "data":
                        frame.data = json.loads(value)
                    elif name == "event":
                        frame.event = value
                    elif name == "id":
                        frame.id = value

    def next(self, timeout: float = WAIT) -> Frame:
        return self.frames.get(timeout=timeout)

    def nothing_for(self, seconds: float) -> bool:
        try:
            self.frames.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self._stop.set()


@dataclass
class Live:
    url: str
    layout: KeyLayout
    client: redis.Redis
    hour: int = 0

    def publish(self, value: float = 1.0) -> str:
        """Publish the next hour (a new hour: a ``published`` event); return the hour as events name it."""
        hour = H0 + timedelta(hours=self.hour)
        publish_builds(self.client, self.layout, [events_build(hour, value)], OPTIONS)
        self.hour += 1
        return hour.strftime("%Y-%m-%dT%H:00:00Z")

    def events(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.url}/v1/events" + (f"?{query}" if query else "")


def serve(redis_url: str, env: dict[str, str] | None = None) -> Iterator[Live]:
    """A `tally serve` reading Redis at ``redis_url`` (the publisher writes to the test Redis directly)."""
    layout = KeyLayout(f"{TEST_PREFIX}-sse-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(TEST_REDIS_URL)
    publish_builds(client, layout, [events_build(H0 - timedelta(hours=1), 1)], OPTIONS)  # not cold
    port = free_port()
    server = start_server(redis_url, layout.prefix, port, {"TALLY_EVENTS_KEEPALIVE_SECONDS": "0.5", **(env or {})})
    try:
        yield Live(f"http://127.0.0.1:{port}", layout, client)
    finally:
        stop(server)
        delete_prefix(client, layout)
        client.close()


@pytest.fixture(scope="module")
def live(redis_server: str) -> Iterator[Live]:
    """One server for the module's tests: each publishes hours of its own and reads only its own events."""
    yield from serve(redis_server)


def test_a_publish_reaches_a_connected_client(live: Live) -> None:
    listener = Listener(live.events())
    assert listener.status == 200 and listener.content_type.startswith("text/event-stream")
    hour = live.publish()
    frame = listener.next()
    # Read only now: the reader thread parses the opening block before any frame after it.
    opened_at = listener.opening_id
    assert frame.event == "published" and frame.id == frame.data["id"]
    assert frame.data["hours"] == [hour] and frame.data["metrics"] == ["events"]
    assert set(frame.data) >= {"type", "hours", "metrics", "builds", "generation", "at"}
    # The stream opens at the newest id then: resuming from it replays exactly this event.
    assert opened_at is not None and stream_id_key(opened_at) < stream_id_key(str(frame.id))
    resumed = Listener(live.events(), headers={"Last-Event-ID": opened_at})
    assert resumed.next().id == frame.id
    resumed.close()
    # Idle, the stream carries keep-alive comments (0.5 s here; 15 s by default).
    assert listener.comments.get(timeout=WAIT).startswith(":")
    listener.close()


def test_a_client_that_reconnects_misses_nothing(live: Live) -> None:
    first = Listener(live.events())
    live.publish()
    seen = first.next()
    first.close()
    away = [live.publish(2), live.publish(3)]  # published while the client was away
    again = Listener(live.events(), headers={"Last-Event-ID": str(seen.id)})
    replayed = [again.next(), again.next()]
    assert [f.data["hours"][0] for f in replayed] == away
    later = live.publish(4)
    assert again.next().data["hours"] == [later]  # then live, no duplicate
    assert again.nothing_for(1.0)
    # ?since= does the same for a client that starts from a known id (e.g. a page's first load).
    since = Listener(live.events(since=str(replayed[0].id)))
    assert [since.next().data["hours"][0], since.next().data["hours"][0]] == [away[1], later]
    for listener in (again, since):
        listener.close()


def test_a_client_too_far_behind_gets_one_reset(live: Live) -> None:
    first = Listener(live.events())
    live.publish()
    old = first.next()
    first.close()
    trimming = PublishOptions(superseded_ttl=60, events_keep=1)
    for value in range(250):  # Redis trims whole stream nodes (100 entries): the old id goes
        publish_builds(live.client, live.layout, [events_build(H0 + timedelta(hours=50), 100 + value)], trimming)
    newest = live.client.xrevrange(live.layout.events(), count=1)[0][0].decode()
    late = Listener(live.events(), headers={"Last-Event-ID": str(old.id)})
    reset = late.next()
    assert (reset.event, reset.id, reset.data["type"]) == ("reset", newest, "reset")
    assert late.nothing_for(1.0)  # one reset, not the kept tail
    live.publish()
    assert late.next().event == "published"
    late.close()


def test_metrics_filter_keeps_what_concerns_them(live: Live) -> None:
    listener = Listener(live.events(metrics="active_users,conversion_rate"))
    live.publish()  # a build of `events` only: filtered out
    mark_pending(live.client, live.layout, [H0], {H0: "input changed since the hour was built"})
    frame = listener.next()
    assert frame.event == "pending" and frame.data["pending"] == {
        "2026-11-20T00:00:00Z": "input changed since the hour was built"
    }
    assert listener.nothing_for(0.5)
    listener.close()
    # A ratio concerns events about its parts: conversion_rate is purchasers over active_users.
    ratio = Listener(live.events(metrics="avg_order_value"))  # revenue / orders
    publish_builds(live.client, live.layout, [hour_build(H0 + timedelta(hours=60), {"orders": {"_": 2.0}})], OPTIONS)
    assert ratio.next().data["metrics"] == ["orders"]
    ratio.close()
    assert httpx.get(live.events(metrics="nope")).json()["error"]["code"] == "unknown_metric"


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"since": "yesterday"}, {}), ({}, {"Last-Event-ID": "1-2-3"}), ({"since": "1" * 30}, {})],
)
def test_bad_ids_are_400(live: Live, params: dict[str, str], headers: dict[str, str]) -> None:
    response = httpx.get(live.events(**params), headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_parameter"


def test_a_redis_outage_resets_clients_and_the_stream_resumes(redis_server: str) -> None:
    proxy = SwitchableProxy()
    try:
        url = redis_server.replace(redis_server.split("//")[1].split("/")[0], f"127.0.0.1:{proxy.port}")
        for live in serve(url):
            listener = Listener(live.events())
            live.publish()
            assert listener.next().event == "published"
            proxy.set_down()  # every connection through it drops: Redis "restarts"
            time.sleep(0.5)
            proxy.up = True
            reset = listener.next(timeout=15)
            assert reset.event == "reset"
            live.publish()
            assert listener.next().event == "published"
            listener.close()
    finally:
        proxy.close()


def test_the_token_and_cors_rules_cover_the_stream(redis_server: str) -> None:
    env = {"TALLY_API_TOKEN": "s3cret", "TALLY_CORS_ORIGINS": "https://dash.example"}
    for live in serve(redis_server, env):
        assert httpx.get(live.events()).status_code == 401
        listener = Listener(live.events(), headers={"Authorization": "Bearer s3cret", "Origin": "https://dash.example"})
        assert listener.status == 200
        live.publish()
        assert listener.next().event == "published"
        listener.close()
        preflight = httpx.options(
            live.events(),
            headers={
                "Origin": "https://dash.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization, Last-Event-ID",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://dash.example"


def test_the_python_clients_listen_replays_and_follows(live: Live) -> None:
    """tally.client.Client.listen against the live stream: replay from an id, then live events."""
    from tally.client import Client

    first = Listener(live.events())
    start = live.publish()
    anchor = first.next()
    first.close()
    away = live.publish(7)
    received: queue.Queue[Any] = queue.Queue()

    def follow() -> None:
        for count, event in enumerate(Client(live.url).listen(since=str(anchor.id), metrics=["events"]), 1):
            received.put(event)
            if count == 2:
                return  # leaving the loop closes the stream

    threading.Thread(target=follow, daemon=True).start()
    replayed = received.get(timeout=WAIT)
    assert (replayed.type, replayed.data["hours"]) == ("published", [away])
    later = live.publish(8)
    followed = received.get(timeout=WAIT)
    assert (followed.type, followed.data["hours"], followed.id) == ("published", [later], followed.data["id"])
    assert start != away
