"""Late data and interrupted runs, through the steps tally_hourly runs (tally.app.pipeline).

Each test publishes a known state, then changes the durable side the way real
life does (a late file, a rollup whose publish died, a broken late file) and
runs what the next hourly run runs: find_stale, compute, publish. The API is
read in between, so the pending, complete and revised flags are checked where
a dashboard sees them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cache.client import RedisUnavailableError
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from jobs.inputs import changed_hours
from tally.app.pipeline import Stale, compute, find_stale, late_input_problems, lookback, publish_settings_hours
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import dump_prefix, event, write_events
from tests.support.cli import tally

SPEC = load_spec(DEFAULT_SPEC_PATH)
H = {h: datetime(2026, 11, 27, h, tzinfo=UTC) for h in (10, 11, 12, 13)}
DAY = {"grain": "day", "start": "2026-11-27", "end": "2026-11-28"}
HOURS = {"grain": "hour", "start": "2026-11-27T10:00Z", "end": "2026-11-27T13:00Z"}


def events_at(hour: int, count: int, prefix: str) -> list[dict]:
    return [event(f"{prefix}{i}", f"2026-11-27T{hour}:{i:02d}:00", user_id=f"u{i}") for i in range(count)]


@pytest.fixture
def settings(tmp_path: Path, layout, redis_server: str) -> Settings:
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix, data_dir=tmp_path, spark_master="local[2]")


@pytest.fixture
def published(spark, redis_client, layout, settings: Settings) -> Settings:
    """Hours 10-12 computed and published: 3 events each."""
    for hour in (10, 11, 12):
        write_events(settings.data_dir, H[hour], events_at(hour, 3, f"e{hour}-"))
    run_hours(spark, settings.data_dir, SPEC, [H[10], H[11], H[12]])
    publish_hours(
        redis_client, layout, settings.data_dir, SPEC, [H[10], H[11], H[12]], PublishOptions(superseded_ttl=60)
    )
    return settings


def points(api: TestClient, params: dict, **headers: str) -> list[dict]:
    response = api.get("/v1/metrics/events", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["series"][0]["points"]


def test_a_late_file_is_pending_then_recomputed_and_marked_revised(spark, published: Settings):
    settings = published
    with TestClient(create_app(settings)) as api:
        before = api.get("/v1/metrics/events", params=DAY)
        assert before.json()["series"][0]["points"][0]["value"] == 9
        assert [p["revised"] for p in points(api, HOURS)] == [False, False, False]
        assert api.get("/health").json()["pending_hours"] == []

        # Two late events arrive for 10:00, then the 13:00 run starts.
        write_events(settings.data_dir, H[10], events_at(10, 2, "late-"), name="late.parquet")
        write_events(settings.data_dir, H[13], events_at(13, 1, "e13-"))
        stale = find_stale(settings, lookback(H[13], settings.late_data_horizon_hours))
        assert stale == Stale(recompute=[H[10]], republish=[])  # exactly the changed hour

        # Until the run publishes, the dashboard is told the hour is out of date.
        assert api.get("/health").json()["pending_hours"] == ["2026-11-27T10:00:00Z"]
        assert [p["complete"] for p in points(api, HOURS)] == [False, True, True]
        pending = api.get("/v1/metrics/events", params=DAY, headers={"If-None-Match": before.headers["etag"]})
        assert pending.status_code == 200 and pending.json()["series"][0]["points"][0]["value"] == 9

        computed = compute(settings, [H[13]], stale, app_name="test")
        assert computed.publish == ["2026-11-27T10:00:00Z", "2026-11-27T13:00:00Z"] and computed.failed == {}
        publish_settings_hours(settings, [H[10], H[13]])

        after = api.get("/v1/metrics/events", params=DAY, headers={"If-None-Match": pending.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] not in {
            before.headers["etag"],
            pending.headers["etag"],
        }
        assert after.json()["series"][0]["points"][0]["value"] == 9 + 2 + 1
        assert after.json()["series"][0]["points"][0]["revised"] is True  # the day holds a revised hour
        hourly = points(api, HOURS)
        assert [p["value"] for p in hourly] == [5, 3, 3]
        assert [p["revised"] for p in hourly] == [True, False, False]
        assert [p["complete"] for p in hourly] == [True, True, True]
        assert api.get("/health").json()["pending_hours"] == []
        runs = api.get("/v1/runs", params={"start": "2026-11-27T10:00Z", "end": "2026-11-27T14:00Z"}).json()["runs"]
        revised = {run["hour"]: run.get("revised_from") for run in runs}
        assert revised["2026-11-27T10:00:00Z"] is not None
        assert revised["2026-11-27T11:00:00Z"] is None and revised["2026-11-27T13:00:00Z"] is None
    assert changed_hours(settings.data_dir, SPEC, [H[10], H[11], H[12], H[13]]) == []


def test_input_that_goes_back_to_what_was_built_is_no_longer_pending(published: Settings, redis_client, layout):
    settings = published
    late = write_events(settings.data_dir, H[11], events_at(11, 1, "late-"), name="late.parquet")
    window = lookback(H[13], 72)
    assert find_stale(settings, window).recompute == [H[11]]
    assert redis_client.hkeys(layout.pending()) == [b"2026-11-27T11Z"]
    late.unlink()  # the producer withdrew the file before the next run
    assert find_stale(settings, window) == Stale()
    assert redis_client.hkeys(layout.pending()) == []


def test_a_rollup_whose_publish_failed_stays_unserved_then_the_next_run_publishes_it(
    spark, published: Settings, redis_client, layout, tmp_path: Path
):
    """A crash or outage between the rollup and the publish: the previous build stays served."""
    settings = published
    before = dump_prefix(redis_client, layout)
    write_events(settings.data_dir, H[11], events_at(11, 4, "late-"), name="late.parquet")
    run_hours(spark, settings.data_dir, SPEC, [H[11]])  # the aggregate step finished ...
    # ... and the publish step could not reach Redis (what a killed or partitioned worker leaves).
    result = tally(
        tmp_path,
        layout,
        "redis://127.0.0.1:1/0",
        "publish",
        "--start",
        "2026-11-27T11:00Z",
        "--end",
        "2026-11-27T12:00Z",
    )
    assert result.returncode == 1
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RedisUnavailableError):
        publish_settings_hours(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), [H[11]])
    assert dump_prefix(redis_client, layout) == before  # the previous build is still what is served

    with TestClient(create_app(settings)) as api:
        assert [p["value"] for p in points(api, HOURS)] == [3, 3, 3]
        # The next hourly run finds the rollup that never reached Redis: its input did not change.
        write_events(settings.data_dir, H[13], events_at(13, 1, "e13-"))
        stale = find_stale(settings, lookback(H[13], 72))
        assert stale == Stale(recompute=[], republish=[H[11]])
        assert [p["complete"] for p in points(api, HOURS)] == [True, False, True]
        computed = compute(settings, [H[13]], stale, app_name="test")
        assert computed.publish == ["2026-11-27T11:00:00Z", "2026-11-27T13:00:00Z"]
        publish_settings_hours(settings, [H[11], H[13]])
        hourly = points(api, HOURS)
        assert [p["value"] for p in hourly] == [3, 7, 3]
        assert [p["complete"] for p in hourly] == [True, True, True]
    assert find_stale(settings, lookback(H[13], 72)) == Stale()


def test_a_broken_late_file_keeps_the_previous_build_and_does_not_hold_back_the_new_hour(
    spark, published: Settings, redis_client, layout
):
    settings = published
    broken = write_events(settings.data_dir, H[12], events_at(12, 1, "late-"), name="late.parquet")
    pq.write_table(pq.read_table(broken).drop_columns(["event_type"]), broken)
    write_events(settings.data_dir, H[13], events_at(13, 2, "e13-"))

    stale = find_stale(settings, lookback(H[13], 72))
    assert stale.recompute == [H[12]]
    computed = compute(settings, [H[13]], stale, app_name="test")
    assert computed.publish == ["2026-11-27T13:00:00Z"]
    assert list(computed.failed) == ["2026-11-27T12:00:00Z"]
    publish_settings_hours(settings, [H[13]])
    problem = late_input_problems(computed.failed)
    assert problem is not None and f"{broken}: missing required column 'event_type'" in problem

    with TestClient(create_app(settings)) as api:
        hourly = points(api, {**HOURS, "end": "2026-11-27T14:00Z"})
        assert [p["value"] for p in hourly] == [3, 3, 3, 2]  # 12:00 keeps its previous build
        assert [p["complete"] for p in hourly] == [True, True, False, True]  # ... and says it is out of date
        assert api.get("/health").json()["pending_hours"] == ["2026-11-27T12:00:00Z"]


def test_tally_run_fails_naming_a_broken_late_file_after_publishing_its_own_hour(published: Settings, layout):
    settings = published
    broken = write_events(settings.data_dir, H[12], events_at(12, 1, "late-"), name="late.parquet")
    pq.write_table(pq.read_table(broken).drop_columns(["event_type"]), broken)
    write_events(settings.data_dir, H[13], events_at(13, 2, "e13-"))
    result = tally(settings.data_dir, layout, settings.redis_url, "run", "--hour", "2026-11-27T13:00Z")
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"{broken}: missing required column 'event_type'" in result.stderr
    assert "published 1 hour(s)" in result.stdout
