"""The API's response cache: repeated reads are served from stored bytes, and never once the data changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cache.freshness import INPUT_CHANGED, mark_pending
from cache.options import PublishOptions
from cache.publish import publish_builds
from cache.rollback import rollback_hour
from dashboard_api import create_app
from dashboard_api import response_cache as rc
from tally.core.layout import hour_field
from tally.core.settings import Settings
from tests.support.builds import events_build

H = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in range(24)]
PARAMS = {"start": "2026-11-20T00:00Z", "end": "2026-11-20T04:00Z"}


def values(response) -> list[float | None]:
    return [p["value"] for p in response.json()["series"][0]["points"]]


def drop_live_data(client, layout) -> None:
    """Delete the hours' stored values behind the API's back (no publish, no new generation)."""
    for key in client.scan_iter(match=f"{layout.prefix}:b:*:values"):
        client.delete(key)
    for key in client.scan_iter(match=f"{layout.prefix}:day:*"):
        client.delete(key)


@pytest.fixture
def api(redis_client, layout, redis_server):
    publish_builds(redis_client, layout, [events_build(h, 1) for h in H[:4]], PublishOptions(superseded_ttl=60))
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as client:
        yield client


def test_a_repeated_read_is_served_from_the_stored_bytes(api, redis_client, layout):
    first = api.get("/v1/metrics/events", params=PARAMS)
    assert values(first) == [1, 1, 1, 1]
    drop_live_data(redis_client, layout)  # only a cached answer can still say 1
    again = api.get("/v1/metrics/events", params=PARAMS)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert again.headers["cache-control"].startswith("public, max-age=")
    # A different query is built afresh (its hours now read as zero).
    assert values(api.get("/v1/metrics/events", params={**PARAMS, "tz": "UTC"})) == [0] * 4
    conditional = api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": first.headers["etag"]})
    assert conditional.status_code == 304 and conditional.content == b""
    head = api.head("/v1/metrics/events", params=PARAMS)
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == first.headers["etag"]


def test_every_kind_of_change_is_seen_at_once(api, redis_client, layout):
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    publish_builds(redis_client, layout, [events_build(H[2], 7)], PublishOptions(superseded_ttl=60))
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 7, 1]
    mark_pending(redis_client, layout, H[:4], {H[1]: INPUT_CHANGED})
    points = api.get("/v1/metrics/events", params=PARAMS).json()["series"][0]["points"]
    assert [p["complete"] for p in points] == [True, False, True, True]
    rollback_hour(redis_client, layout, H[2])
    points = api.get("/v1/metrics/events", params=PARAMS).json()["series"][0]["points"]
    assert [p["value"] for p in points] == [1, 1, 1, 1] and points[2]["revised"]
    # Publishing the pending hour again, unchanged, clears its mark: complete again.
    publish_builds(redis_client, layout, [events_build(H[1], 1)], PublishOptions(superseded_ttl=60))
    points = api.get("/v1/metrics/events", params=PARAMS).json()["series"][0]["points"]
    assert [p["complete"] for p in points] == [True, True, True, True]


def test_a_stored_answer_expires_when_the_hour_turns(api, redis_client, layout, monkeypatch):
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    drop_live_data(redis_client, layout)
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    next_hour = rc.current_hour() + 1
    monkeypatch.setattr(rc, "current_hour", lambda now=None: next_hour)
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [0] * 4


def test_errors_and_outages_are_not_stored(api, redis_client, layout):
    assert api.get("/v1/metrics/events", params={"start": "x", "end": "y"}).status_code == 400
    redis_client.delete(layout.generation())  # as before any publish: nothing may be cached
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    drop_live_data(redis_client, layout)
    assert values(api.get("/v1/metrics/events", params=PARAMS)) == [0] * 4


def test_the_cache_can_be_turned_off(redis_client, layout, redis_server):
    publish_builds(redis_client, layout, [events_build(h, 1) for h in H[:4]], PublishOptions(superseded_ttl=60))
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, api_response_cache_mb=0)
    with TestClient(create_app(settings)) as api:
        assert values(api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
        drop_live_data(redis_client, layout)
        assert values(api.get("/v1/metrics/events", params=PARAMS)) == [0] * 4


def test_the_store_keeps_within_its_byte_budget_evicting_the_least_recently_used():
    store = rc.ResponseCache(max_bytes=3 * 1300)

    def entry(n: int) -> rc.Entry:
        return rc.Entry(b"g", 0, [(b"etag", f'"{n}"'.encode())], f'"{n}"'.encode(), b"x" * 1000)

    for n in range(3):
        store.put(str(n).encode(), entry(n))
    assert store.get(b"0") is not None  # 0 is now the most recently used
    store.put(b"3", entry(3))
    assert store.get(b"1") is None and store.get(b"0") is not None and store.get(b"3") is not None
    assert store.bytes <= store.max_bytes
    store.put(b"big", rc.Entry(b"g", 0, [], b'"b"', b"x" * 10_000))  # larger than the budget: not kept
    assert store.get(b"big") is None and len(store) == 3


def test_the_generation_changes_with_each_switch(redis_client, layout):
    publish_builds(redis_client, layout, [events_build(H[0], 1)], PublishOptions(superseded_ttl=60))
    first = redis_client.get(layout.generation())
    # Unchanged: nothing to see.
    publish_builds(redis_client, layout, [events_build(H[0], 1)], PublishOptions(superseded_ttl=60))
    assert redis_client.get(layout.generation()) == first
    publish_builds(redis_client, layout, [events_build(H[0], 2)], PublishOptions(superseded_ttl=60))
    assert redis_client.get(layout.generation()) not in (None, first)
    assert redis_client.hget(layout.pointer(), hour_field(H[0])) is not None
