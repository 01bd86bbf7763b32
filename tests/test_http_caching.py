"""Freshness and HTTP caching: complete per point, build id, ETag/304, Cache-Control, Last-Modified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from fastapi.testclient import TestClient

from cache.freshness import INPUT_CHANGED, mark_pending
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import calendar as cal
from dashboard_api import create_app
from dashboard_api.evaluate import Evaluator
from dashboard_api.http_cache import seconds_to_next_publish
from dashboard_api.plan import HashRead, Snapshot
from dashboard_api.requests import Span
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.support.builds import events_build

SPEC = load_spec(DEFAULT_SPEC_PATH)
H = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in range(24)]
PUBLISHED = datetime(2026, 11, 21, 0, 5, tzinfo=UTC)
PARAMS = {"start": "2026-11-20T00:00Z", "end": "2026-11-20T04:00Z"}


@pytest.fixture
def api(redis_client, layout, redis_server):
    # Hours 00-02 and 04-23 are computed; 03 is not.
    publish_builds(
        redis_client,
        layout,
        [events_build(h, 1) for h in H if h.hour != 3],
        PublishOptions(superseded_ttl=60),
        now=PUBLISHED,
    )
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as client:
        yield client


def test_points_say_whether_they_are_complete(api):
    body = api.get("/v1/metrics/events", params=PARAMS).json()
    assert [(p["value"], p["complete"]) for p in body["series"][0]["points"]] == [
        (1, True),
        (1, True),
        (1, True),
        (None, False),
    ]
    day = api.get("/v1/metrics/events", params={"grain": "day", "start": "2026-11-20", "end": "2026-11-21"}).json()
    [point] = day["series"][0]["points"]
    assert point == {"ts": "2026-11-20T00:00:00Z", "value": 23, "complete": False, "revised": False}
    assert (body["build"] and body["build"] == day["build"]) or body["build"]


def test_the_current_hour_is_never_complete():
    read = HashRead("events", "values")
    now = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    snapshot = Snapshot(published_at={H[9]: "p", H[10]: "p"}, hours={read: {H[9]: {"_": 1.0}, H[10]: {"_": 1.0}}})
    evaluator = Evaluator(SPEC, snapshot, [read], cal.UTC_ZONE)
    events = SPEC.get("events")
    assert evaluator.complete(events, Span(H[9], H[10]), now)
    assert not evaluator.complete(events, Span(H[10], H[11]), now)  # 10:00-11:00 is still running


def test_etag_304_until_a_new_build_covers_the_range(api, redis_client, layout):
    first = api.get("/v1/metrics/events", params=PARAMS)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"')
    assert parsedate_to_datetime(first.headers["last-modified"]) == PUBLISHED.replace(microsecond=0)
    max_age = int(first.headers["cache-control"].split("max-age=")[1])
    assert 1 <= max_age <= 3600
    again = api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    # Another representation of the same builds has its own ETag.
    other = api.get("/v1/metrics/events", params={**PARAMS, "grain": "hour", "tz": "UTC"})
    assert other.headers["etag"] != etag
    # A publish outside the range changes nothing; one inside changes the ETag.
    publish_builds(redis_client, layout, [events_build(H[10], 5)], PublishOptions(superseded_ttl=60))
    assert api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": etag}).status_code == 304
    publish_builds(redis_client, layout, [events_build(H[3], 2)], PublishOptions(superseded_ttl=60))
    changed = api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["series"][0]["points"][3] == {
        "ts": "2026-11-20T03:00:00Z",
        "value": 2,
        "complete": True,
        "revised": False,
    }
    # An hour of the range becoming pending (a late file found) changes `complete`, so the ETag too.
    etag = changed.headers["etag"]
    mark_pending(redis_client, layout, [H[1]], {H[1]: INPUT_CHANGED})
    pending = api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": etag})
    assert pending.status_code == 200 and pending.headers["etag"] != etag
    assert [p["complete"] for p in pending.json()["series"][0]["points"]] == [True, False, True, True]
    # Unchanged data clears the mark.
    publish_builds(redis_client, layout, [events_build(H[1], 1)], PublishOptions(superseded_ttl=60))
    assert api.get("/v1/metrics/events", params=PARAMS, headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), 600),
        (datetime(2026, 11, 20, 10, 9, 59, tzinfo=UTC), 1),
        (datetime(2026, 11, 20, 10, 10, tzinfo=UTC), 3600),
        (datetime(2026, 11, 20, 10, 40, tzinfo=UTC), 1800),
    ],
)
def test_max_age_runs_to_the_next_expected_publish(now, expected):
    assert seconds_to_next_publish(now, 600) == expected
    assert seconds_to_next_publish(now + timedelta(microseconds=1), 600) <= expected
