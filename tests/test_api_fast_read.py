"""The uncached read path (issue 18, a fast first read): what it writes and reads, and warming after a publish.

A series body is written as JSON data directly, not through the response models:
it must still be exactly what the models say. The store resolves an hourly
series' whole days from the day index and sends its commands in one raw
pipeline: the same answers as through the pointers. After a publish the recently
asked queries are built again in the background: a read then hits the cache, and
never gets bytes older than what is published.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from cache.freshness import INPUT_CHANGED, mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app, metrics_routes
from dashboard_api.models import SeriesResponse
from dashboard_api.store import _fields, _packed, pipelined
from tally.core.layout import day_field
from tally.core.settings import Settings
from tests.support import api as support
from tests.support.builds import events_build

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings

DAY = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in range(24)]
WHOLE_DAY = {"start": "2026-11-20T00:00Z", "end": "2026-11-21T00:00Z"}
OPTIONS = PublishOptions(superseded_ttl=60)


def points(body: dict) -> list[tuple]:
    return [(p["ts"], p["value"], p["complete"], p["revised"]) for p in body["series"][0]["points"]]


# --- the body is the models' document -----------------------------------------------


@pytest.mark.parametrize(
    "metric, params",
    [
        ("revenue", support.HOURS_10_TO_14),
        ("events", {**support.HOURS_10_TO_14, "group_by": "country", "limit": "1"}),
        ("active_users", {"start": "2026-11-26", "end": "2026-11-29", "grain": "day", "bounds": "true"}),
        ("avg_order_value", {"start": "2026-11-27", "end": "2026-11-29", "grain": "day", "window": "2d"}),
        ("events", {"start": "2026-11-27", "end": "2026-11-29", "grain": "day", "tz": "Europe/Berlin"}),
        ("events", {**support.HOURS_10_TO_14, "country": "XX"}),  # a warning
    ],
)
def test_the_body_is_what_the_response_model_dumps(api: TestClient, metric: str, params: dict[str, str]) -> None:
    body = api.get(f"/v1/metrics/{metric}", params=params).json()
    # What the route returned before it wrote the document itself: the model, dumped, q and bounds dropped.
    expected = SeriesResponse.model_validate(body).model_dump(mode="json")
    if expected["q"] is None:
        del expected["q"]
    if params.get("bounds") != "true":
        for series in expected["series"]:
            for point in series["points"]:
                del point["lower"], point["upper"]
    assert body == expected and list(body) == list(expected)
    assert [list(p) for s in body["series"] for p in s["points"]] == [
        list(p) for s in expected["series"] for p in s["points"]
    ]
    if metric == "events" and "country" in params:
        assert body["warnings"] and body["warnings"][0]["code"] == "value_not_seen"


# --- an hourly day through the day index, as through its pointers --------------------


@pytest.fixture
def day_api(redis_client: redis.Redis, layout: KeyLayout, redis_server: str):
    # Hour 5 never computed, hour 3 republished with other data (revised), hour 7 pending.
    publish_builds(redis_client, layout, [events_build(h, h.hour + 1) for h in DAY if h.hour != 5], OPTIONS)
    publish_builds(redis_client, layout, [events_build(DAY[3], 40)], OPTIONS)
    mark_pending(redis_client, layout, DAY, {DAY[7]: INPUT_CHANGED})
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, api_response_cache_mb=0)
    with TestClient(create_app(settings)) as client:
        yield client


def test_an_hourly_day_reads_as_its_hours_do(day_api: TestClient, redis_client: redis.Redis, layout: KeyLayout):
    whole = day_api.get("/v1/metrics/events", params=WHOLE_DAY).json()  # one whole day: the day index
    # 23 hours hold no whole day: every hour through its pointer.
    partial = day_api.get("/v1/metrics/events", params={**WHOLE_DAY, "end": "2026-11-20T23:00Z"}).json()
    assert points(whole)[:23] == points(partial)
    expected = [h.hour + 1 for h in DAY]
    expected[3], expected[5] = 40, None
    assert [v for _, v, _, _ in points(whole)] == expected
    assert [r for _, _, _, r in points(whole)] == [h.hour == 3 for h in DAY]
    assert [c for _, _, c, _ in points(whole)] == [h.hour not in (5, 7) for h in DAY]
    assert whole["as_of"] == partial["as_of"] is not None
    # A day published before the index existed has no entry: its pointers answer, the same.
    redis_client.hdel(layout.day_index(), day_field(DAY[0].date()))
    unindexed = day_api.get("/v1/metrics/events", params=WHOLE_DAY).json()
    assert points(unindexed) == points(whole) and unindexed["as_of"] == whole["as_of"]


def test_a_failed_pipeline_leaves_no_reply_behind(redis_client: redis.Redis, layout: KeyLayout, redis_server: str):
    text_key, hash_key = f"{layout.prefix}:text", f"{layout.prefix}:hash"
    redis_client.set(text_key, "x")
    redis_client.hset(hash_key, mapping={"a": "1", "b": "2"})
    client = redis.Redis.from_url(redis_server, max_connections=1)  # one connection: a desync would show
    commands = [("HMGET", hash_key, "a", "é"), ("EXISTS", text_key)]
    assert _packed(commands) == [b"".join(redis_client.connection_pool.make_connection().pack_commands(commands))]
    try:
        with pytest.raises(redis.ResponseError):
            pipelined(client, [("HGET", text_key, "f"), ("HGETALL", hash_key)])  # WRONGTYPE, then a reply
        # The connection that failed mid-way was closed: the next read gets its own replies.
        whole, some = pipelined(client, [("HGETALL", hash_key), ("HMGET", hash_key, "b", "z")])
        # HGETALL is a map in RESP3 (redis-py's default) and a flat list in RESP2.
        assert _fields(whole, None) == {"a": b"1", "b": b"2"} and some == [b"2", None]
    finally:
        client.close()


# --- warming after a publish ----------------------------------------------------------


@pytest.fixture
def warm_api(redis_client: redis.Redis, layout: KeyLayout, redis_server: str):
    publish_builds(redis_client, layout, [events_build(h, 1) for h in DAY[:4]], OPTIONS)
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as client:
        yield client


PARAMS = {"start": "2026-11-20T00:00Z", "end": "2026-11-20T04:00Z"}


def values(response) -> list:
    return [p["value"] for p in response.json()["series"][0]["points"]]


def warmed(client: TestClient, redis_client: redis.Redis, layout: KeyLayout, rounds: int) -> None:
    """Wait until a warming round after ``rounds`` ran and the cache holds the current generation."""
    warming = client.app.state.warming
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        generation = redis_client.get(layout.generation())
        entries = warming.middleware.cache._entries.values()
        if warming.rounds > rounds and any(e.generation == generation for e in entries):
            return
        time.sleep(0.02)
    raise AssertionError("the response cache was not warmed after the publish")


def test_the_first_read_after_a_publish_is_a_hit(warm_api, redis_client, layout, monkeypatch) -> None:
    assert values(warm_api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    csv = warm_api.get("/v1/metrics/events", params=PARAMS, headers={"Accept": "text/csv"})
    rounds = warm_api.app.state.warming.rounds
    publish_builds(redis_client, layout, [events_build(h, 2) for h in DAY[:4]], OPTIONS)
    warmed(warm_api, redis_client, layout, rounds)

    def no_reads(*args, **kwargs):
        raise AssertionError("the read was built, not served from the warmed cache")

    monkeypatch.setattr(metrics_routes, "read_or_cold", no_reads)
    # Served from what warming stored: the new data, each representation as it was asked for.
    assert values(warm_api.get("/v1/metrics/events", params=PARAMS)) == [2, 2, 2, 2]
    warm_csv = warm_api.get("/v1/metrics/events", params=PARAMS, headers={"Accept": "text/csv"})
    assert warm_csv.headers["content-type"].startswith("text/csv") and warm_csv.text != csv.text
    assert warm_csv.text.splitlines()[1].endswith(",2,true,true")  # republished: revised
    # Only answers that were stored are remembered: an error is not built again after each publish.
    assert warm_api.get("/v1/metrics/events", params={**PARAMS, "grain": "fortnight"}).status_code == 400
    assert len(warm_api.app.state.warming.middleware.recent) == 2


def test_a_read_never_gets_bytes_older_than_the_publish(warm_api, redis_client, layout) -> None:
    """Publishes racing the warming: whatever warming stored, each read shows the data published before it."""
    assert values(warm_api.get("/v1/metrics/events", params=PARAMS)) == [1, 1, 1, 1]
    for value in range(2, 12):
        publish_builds(redis_client, layout, [events_build(h, value) for h in DAY[:4]], OPTIONS)
        assert values(warm_api.get("/v1/metrics/events", params=PARAMS)) == [value] * 4
        if value % 3 == 0:
            time.sleep(0.1)  # sometimes after warming is done, sometimes while it builds
    rounds = warm_api.app.state.warming.rounds
    publish_builds(redis_client, layout, [events_build(h, 99) for h in DAY[:4]], OPTIONS)
    warmed(warm_api, redis_client, layout, rounds)
    assert values(warm_api.get("/v1/metrics/events", params=PARAMS)) == [99] * 4
