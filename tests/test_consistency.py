"""Readers never see two publishes at once: HTTP readers in a loop while 20 publishes switch builds.

Publish k writes the same marker value k into every hour of two days (events = k
in every slice, revenue = 10k), then rebuilds the day aggregates, exactly as the
jobs do. Any response mixing two publishes would show two different markers
among its points (hour grain), or a day value that is not 24 times one marker
(day grain, served from day aggregates or their hours). Readers run in threads
against a real `tally serve` process.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bench.server import start_server
from cache.builds import HourBuild, build_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.support.net import free_port

SPEC = load_spec(DEFAULT_SPEC_PATH)
START = datetime(2026, 11, 20, tzinfo=UTC)
HOURS = [START + timedelta(hours=i) for i in range(48)]
PUBLISHES = 20
READERS = 3
QUERIES = [
    ("events", {"grain": "hour", "start": "2026-11-20T00:00Z", "end": "2026-11-22T00:00Z"}),
    ("events", {"grain": "day", "start": "2026-11-20", "end": "2026-11-22"}),
    ("revenue", {"grain": "day", "start": "2026-11-20", "end": "2026-11-22", "country": "US"}),
    ("events", {"grain": "hour", "start": "2026-11-20T22:00Z", "end": "2026-11-21T03:00Z", "group_by": "country"}),
]


def marked(hour: datetime, k: int) -> HourBuild:
    values = {
        "events": {"_": float(k), "country=US": float(k), "country=DE": float(k)},
        "revenue": {"_": 10.0 * k, "country=US": 10.0 * k},
    }
    return HourBuild(hour, build_id(values, {}), values, {}, {})


def markers(metric: str, params: dict, body: dict) -> set[float]:
    """The publish markers a response shows: exactly one unless it mixes publishes."""
    per_point = 24 if params["grain"] == "day" else 1
    scale = 10 if metric == "revenue" else 1
    return {p["value"] / per_point / scale for s in body["series"] for p in s["points"]}


def is_one_publish(found: set[float]) -> bool:
    """One marker, and a whole one: a day summing hours of two publishes is not 24 times a marker."""
    return len(found) == 1 and all(marker.is_integer() for marker in found)


@pytest.fixture
def server(layout, redis_server):
    port = free_port()
    process = start_server(redis_server, layout.prefix, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def test_no_response_mixes_two_publishes(server, redis_client, layout):
    publish_builds(redis_client, layout, [marked(h, 1) for h in HOURS], PublishOptions(superseded_ttl=60), spec=SPEC)
    stop = threading.Event()
    seen: Counter[float] = Counter()
    mixed: list[tuple[str, dict, set[float]]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def read() -> None:
        with httpx.Client(base_url=server, timeout=10) as client:
            while not stop.is_set():
                for metric, params in QUERIES:
                    response = client.get(f"/v1/metrics/{metric}", params=params)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:200]}")
                        continue
                    found = markers(metric, params, response.json())
                    with lock:
                        seen.update(found)
                        if not is_one_publish(found):
                            mixed.append((metric, params, found))

    readers = [threading.Thread(target=read) for _ in range(READERS)]
    for reader in readers:
        reader.start()
    for k in range(2, PUBLISHES + 2):
        publish_builds(
            redis_client, layout, [marked(h, k) for h in HOURS], PublishOptions(superseded_ttl=60), spec=SPEC
        )
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for reader in readers:
        reader.join(timeout=30)

    assert errors == []
    assert mixed == []
    print(f"{sum(seen.values())} responses checked across {len(seen)} publishes: none mixed")
    # The check only means something if readers saw the builds switching under them.
    assert len(seen) >= 5, seen
    assert sum(seen.values()) > 100


def test_the_check_would_catch_a_mixed_response():
    hour = {"grain": "hour"}
    body = {"series": [{"points": [{"value": 3.0}, {"value": 4.0}]}]}
    assert not is_one_publish(markers("events", hour, body))
    day = {"grain": "day"}
    assert not is_one_publish(markers("events", day, {"series": [{"points": [{"value": 23 * 3 + 4}]}]}))
    assert not is_one_publish(markers("events", day, {"series": [{"points": [{"value": 72.0}, {"value": 96.0}]}]}))
    assert is_one_publish(markers("events", day, {"series": [{"points": [{"value": 72.0}, {"value": 72.0}]}]}))
