"""Redis is a cache of the rollups: an empty Redis says so (never zeros) and comes back exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cache.keys import parse_day_index_value
from cache.options import PublishOptions
from cache.publish import publish_hours
from cache.rehydrate import rehydrate
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.app.pipeline import publish_settings_hours
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import delete_prefix, dump_prefix, event, write_events

SPEC = load_spec(DEFAULT_SPEC_PATH)
HOURS = [
    datetime(2026, 11, 27, 22, tzinfo=UTC),
    datetime(2026, 11, 27, 23, tzinfo=UTC),
    datetime(2026, 11, 28, 0, tzinfo=UTC),
]
QUERIES = [
    {"grain": "hour", "start": "2026-11-27T21:00Z", "end": "2026-11-28T02:00Z"},
    {"grain": "day", "start": "2026-11-27", "end": "2026-11-29", "group_by": "country"},
]


def answers(api: TestClient) -> list[dict]:
    out = []
    for metric in ("events", "revenue", "active_users", "conversion_rate"):
        for query in QUERIES:
            body = api.get(f"/v1/metrics/{metric}", params=query).json()
            body.pop("as_of")
            out.append(body)
    return out


def without_publish_times(dump: dict) -> dict:
    """The dump with publish times and the generation token removed (a rehydrate is a new publish of the same data)."""
    cleaned = {}
    for key, value in dump.items():
        if key.endswith((b":pointer",)):
            value = {k: json.loads(v)["build"] for k, v in value.items()}
        elif key.endswith(b":days"):
            value = {k: (parse_day_index_value(v.decode())[::2]) for k, v in value.items()}  # builds, revised
        elif key.endswith(b":manifest"):
            value = {k: v for k, v in json.loads(value).items() if k != "published_at"}
        elif key.endswith(b":meta"):
            value = {k: v for k, v in value.items() if k != b"published_at"}
        elif key.endswith(b":generation"):
            value = b"<random token>"  # new on every visible write, by design (cache.keys.mark_changed)
        cleaned[key] = value
    return cleaned


@pytest.fixture
def published(spark, tmp_path: Path, redis_client, layout, redis_server):
    for i, hour in enumerate(HOURS):
        write_events(
            tmp_path,
            hour,
            [
                event(f"a{i}", hour.isoformat(), user_id="u1", country="US"),
                event(
                    f"b{i}", hour.isoformat(), user_id=f"u{i + 2}", event_type="purchase", amount=5.0 + i, country="DE"
                ),
            ],
        )
    run_hours(spark, tmp_path, SPEC, HOURS)
    publish_hours(redis_client, layout, tmp_path, SPEC, HOURS, PublishOptions(superseded_ttl=60))
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix, data_dir=tmp_path)


def test_flushed_redis_is_cold_then_rehydrates_exactly(published, redis_client, layout):
    settings = published
    with TestClient(create_app(settings)) as api:
        before, dump_before = answers(api), without_publish_times(dump_prefix(redis_client, layout))
        assert [p["value"] for p in before[0]["series"][0]["points"]] == [None, 2, 2, 2, None]
        assert api.get("/health").json()["cache"] == "warm"
        delete_prefix(redis_client, layout)  # Redis restarted empty
        cold = api.get("/v1/metrics/events", params=QUERIES[0])
        assert cold.status_code == 503 and cold.json()["error"]["code"] == "cache_cold"
        assert api.get("/health").json()["cache"] == "cold"
        count = rehydrate(redis_client, layout, settings.data_dir, SPEC, PublishOptions(superseded_ttl=60))
        assert count == len(HOURS)
        assert answers(api) == before
    assert without_publish_times(dump_prefix(redis_client, layout)) == dump_before


def test_the_next_publish_rehydrates_a_cold_cache_first(published, redis_client, layout):
    settings = published
    with TestClient(create_app(settings)) as api:
        before = answers(api)
        delete_prefix(redis_client, layout)
        publish_settings_hours(settings, HOURS[-1:])  # what the hourly DAG's publish task runs
        assert answers(api) == before


def test_run_statistics_are_served_per_hour(published):
    with TestClient(create_app(published)) as api:
        body = api.get("/v1/runs", params={"start": "2026-11-27T21:00Z", "end": "2026-11-28T02:00Z"}).json()
        health = api.get("/health").json()
    assert [run["hour"] for run in body["runs"]] == [
        "2026-11-27T22:00:00Z",
        "2026-11-27T23:00:00Z",
        "2026-11-28T00:00:00Z",
    ]
    first = body["runs"][0]
    assert (first["rows_read"], first["valid_rows"], first["invalid_rows"], first["duplicate_rows"]) == (2, 2, 0, 0)
    assert first["invalid_by_reason"]["missing_user_id"] == 0 and len(first["invalid_by_reason"]) == 6
    assert (
        first["build"]
        and first["input_lag_seconds"] > 0
        and first["application_seconds"] > 0
        and first["application_hours"] >= 3
    )
    assert first["computed_at"].endswith("Z")
    assert health["newest_hour"] == "2026-11-28T00:00:00Z" and health["lag_seconds"] > 0
