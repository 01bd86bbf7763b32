"""The API tests' data set, fixtures, helpers and a switchable TCP proxy to Redis.

Data goes in through the real publisher (cache.publish.publish_builds) under a key
prefix of this session (``tests.conftest.TEST_PREFIX``) on the test Redis
(``TEST_REDIS_URL``), and only that prefix is deleted afterwards. Rollups are
built here from a small list of events by a reference implementation of the spec,
and every expected value is derived from those events (or written out literally),
never through dashboard_api.

A test module exposes the fixtures by name (``api, api_layout, settings =
support.api, ...``: all three, since each requests the next); being module-scoped,
each module then publishes its own copy of the data set.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import datasketches
import pytest
import redis
from fastapi.testclient import TestClient

from cache.builds import HourBuild, build_id
from cache.keys import KeyLayout, slice_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import Kind, load_spec
from tests.conftest import TEST_PREFIX, TEST_REDIS_URL, delete_prefix

SPEC = load_spec(DEFAULT_SPEC_PATH)
LG_K = 14


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


# --- the data set -----------------------------------------------------------------

HOUR_A = at(27, 10)
HOUR_B = at(27, 11)
HOUR_C = at(27, 12)  # never published: unknown
HOUR_D = at(27, 13)  # published, one view: no purchases at all
HOUR_E = at(28, 5)
HOUR_R = at(26, 8)  # republished by a test
CORRUPT_HOUR = at(20, 0)

# Publish times (published_at is formatted by the publisher as below).
T_R = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
T_AB = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
T_D = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
T_E = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
T_REPUBLISH = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
AS_OF_AB = "2026-11-27T12:05:00.000000Z"
AS_OF_D = "2026-11-27T14:05:00.000000Z"
AS_OF_E = "2026-11-28T06:05:00.000000Z"
AS_OF_REPUBLISH = "2026-11-28T07:00:00.000000Z"


@dataclass(frozen=True)
class Event:
    hour: datetime
    user_id: str
    event_type: str
    country: str
    platform: str
    amount: float = 0.0

    @property
    def session_id(self) -> str:
        return f"s-{self.user_id}-{self.hour:%H}"


def views(hour: datetime, first: int, last: int) -> list[Event]:
    """One view per user u{first}..u{last-1}, countries and platforms cycling."""
    return [
        Event(hour, f"u{i:04d}", "view", ("US", "DE", "FR")[i % 3], ("web", "ios")[i % 2]) for i in range(first, last)
    ]


EVENTS_A = [
    *views(HOUR_A, 0, 3000),
    Event(HOUR_A, "u0001", "purchase", "US", "web", 10.0),
    Event(HOUR_A, "u0002", "purchase", "DE", "ios", 20.5),
    Event(HOUR_A, "u0003", "purchase", "US", "web", 5.25),
    Event(HOUR_A, "u0004", "signup", "US", "web"),
]
# Users u1000..u2999 were also active in hour A: a day must not count them twice.
EVENTS_B = [*views(HOUR_B, 1000, 4000), Event(HOUR_B, "u0001", "purchase", "US", "web", 7.5)]
EVENTS_D = [Event(HOUR_D, "u0005", "view", "US", "web")]
EVENTS_E = [Event(HOUR_E, "u0007", "purchase", "FR", "android", 100.0)]
EVENTS_R_V1 = [Event(HOUR_R, "u0009", "signup", "US", "web")]
EVENTS_R_V2 = [*EVENTS_R_V1, Event(HOUR_R, "u0010", "signup", "US", "web")]


def rollup(hour: datetime, events: list[Event]) -> HourBuild:
    """Reference rollup: every stored metric, every slice with events, as the Spark job does."""
    values: dict[str, dict[str, float]] = {}
    sketches: dict[str, dict[str, bytes]] = {}
    for metric in SPEC.stored:
        matching = [e for e in events if all(getattr(e, col) in allowed for col, allowed in metric.filter)]
        for dims in metric.slice_dimension_sets():
            groups: dict[str, list[Event]] = defaultdict(list)
            for e in matching:
                groups[slice_id({d: getattr(e, d) for d in dims})].append(e)
            for slice_text, group in groups.items():
                if metric.kind is Kind.COUNT:
                    values.setdefault(metric.name, {})[slice_text] = float(len(group))
                elif metric.kind is Kind.SUM:
                    values.setdefault(metric.name, {})[slice_text] = math.fsum(e.amount for e in group)
                else:
                    sketch = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)
                    for e in group:
                        sketch.update(getattr(e, metric.field))
                    values.setdefault(metric.name, {})[slice_text] = float(round(sketch.get_estimate()))
                    sketches.setdefault(metric.name, {})[slice_text] = sketch.serialize_compact()
    return HourBuild(hour, build_id(values, sketches), values, sketches)


BUILD_A, BUILD_B, BUILD_D = rollup(HOUR_A, EVENTS_A), rollup(HOUR_B, EVENTS_B), rollup(HOUR_D, EVENTS_D)
BUILD_E, BUILD_R_V1 = rollup(HOUR_E, EVENTS_E), rollup(HOUR_R, EVENTS_R_V1)


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_layout(redis_server: str) -> Iterator[KeyLayout]:
    """A fresh prefix holding the published data set; its keys are deleted afterwards."""
    layout = KeyLayout(f"{TEST_PREFIX}-api-{uuid.uuid4().hex}")
    with redis.Redis.from_url(redis_server) as client:
        for builds, now in (
            ([BUILD_R_V1], T_R),
            ([BUILD_A, BUILD_B], T_AB),
            ([BUILD_D], T_D),
            ([BUILD_E], T_E),
        ):
            publish_builds(client, layout, builds, PublishOptions(superseded_ttl=60), now=now)
        yield layout
        delete_prefix(client, layout)


@pytest.fixture(scope="module")
def settings(redis_server: str, api_layout: KeyLayout) -> Settings:
    return Settings(redis_url=redis_server, redis_prefix=api_layout.prefix)


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


# --- requests and their answers ---------------------------------------------------

HOURS_10_TO_14 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T14:00:00Z"}
HOURS_10_TO_12 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T12:00:00Z"}
HOUR_10 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T11:00:00Z"}
H_RANGE = "start=2026-11-27T10:00:00Z&end=2026-11-27T12:00:00Z"


def series(api: TestClient, metric: str, **params: str) -> dict:
    response = api.get(f"/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def values(body: dict, index: int = 0) -> list:
    return [point["value"] for point in body["series"][index]["points"]]


def dimension_values(api: TestClient, metric: str, dimension: str, **params: str) -> list[tuple[str, object]]:
    response = api.get(f"/v1/metrics/{metric}/values/{dimension}", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["metric"], body["dimension"]) == (metric, dimension)
    return [(v["value"], v["count"]) for v in body["values"]]


def within(actual: float, exact: float, tolerance: float = 0.02) -> bool:
    return abs(actual - exact) <= tolerance * exact


def hour_ts(day: int, hours: range) -> list[str]:
    return [f"2026-11-{day}T{h:02d}:00:00Z" for h in hours]


# --- outages ------------------------------------------------------------------------


class SwitchableProxy:
    """A TCP proxy to Redis that can drop every connection, to stage an outage."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        test_redis = urlsplit(TEST_REDIS_URL)
        target = target or (test_redis.hostname or "127.0.0.1", test_redis.port or 6379)
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                downstream.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def set_down(self) -> None:
        self.up = False
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.set_down()
        self.server.close()
