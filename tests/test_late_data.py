"""Late data: a file added to a published hour is found by its fingerprint and recomputed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import changed_hours, run_hours, with_late_hours
from tally.settings import DEFAULT_SPEC_PATH, Settings
from tally.spec import load_spec
from tests.conftest import event, write_events

SPEC = load_spec(DEFAULT_SPEC_PATH)
H = {h: datetime(2026, 11, 27, h, tzinfo=UTC) for h in (10, 11, 12, 13)}
DAY = {"grain": "day", "start": "2026-11-27", "end": "2026-11-28"}


def events_at(hour: int, count: int, prefix: str) -> list[dict]:
    return [event(f"{prefix}{i}", f"2026-11-27T{hour}:{i:02d}:00", user_id=f"u{i}") for i in range(count)]


def test_a_late_file_is_recomputed_by_the_next_hourly_run(spark, redis_client, layout, redis_server, tmp_path: Path):
    for hour in (10, 11, 12):
        write_events(tmp_path, H[hour], events_at(hour, 3, f"e{hour}-"))
    run_hours(spark, tmp_path, SPEC, [H[10], H[11], H[12]])
    publish_hours(redis_client, layout, tmp_path, SPEC, [H[10], H[11], H[12]], superseded_ttl=60)
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, data_dir=tmp_path)
    with TestClient(create_app(settings)) as api:
        before = api.get("/v1/metrics/events", params=DAY)
        assert before.json()["series"][0]["points"][0]["value"] == 9
        assert changed_hours(tmp_path, [H[10], H[11], H[12]]) == []

        # Two late events arrive for 10:00, then the 13:00 run starts.
        write_events(tmp_path, H[10], events_at(10, 2, "late-"), name="late.parquet")
        write_events(tmp_path, H[13], events_at(13, 1, "e13-"))
        hours = with_late_hours(tmp_path, [H[13]], horizon_hours=72)
        assert hours == [H[10], H[13]]  # exactly the changed hour, plus the run's own
        report = run_hours(spark, tmp_path, SPEC, hours)
        publish_hours(redis_client, layout, tmp_path, SPEC, report.computed_hours, superseded_ttl=60)

        after = api.get("/v1/metrics/events", params=DAY, headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        assert after.json()["series"][0]["points"][0]["value"] == 9 + 2 + 1
        runs = api.get("/v1/runs", params={"start": "2026-11-27T10:00Z", "end": "2026-11-27T14:00Z"}).json()["runs"]
        revised = {run["hour"]: run.get("revised_from") for run in runs}
        assert revised["2026-11-27T10:00:00Z"] is not None  # marked as a revision
        assert revised["2026-11-27T11:00:00Z"] is None and revised["2026-11-27T13:00:00Z"] is None
    assert changed_hours(tmp_path, [H[10], H[11], H[12], H[13]]) == []
