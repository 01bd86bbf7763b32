"""The aggregate steps of the DAGs log one line of run statistics per computed hour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import jobs.hourly
from tally.app.pipeline import Stale, compute
from tally.core.settings import Settings

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
STATS = {
    "rows_read": 1000,
    "valid_rows": 990,
    "invalid_rows": 10,
    "invalid_by_reason": {"bad_amount": 7, "missing_event_id": 3, "bad_time": 0},
    "duplicate_rows": 2,
    "counted_events": 988,
    "application_seconds": 12.3,
    "application_hours": 24,
    "input_files": 2,
}


def test_compute_logs_each_hours_statistics(monkeypatch, caplog, tmp_path):
    # What tally_hourly's and tally_reconcile's aggregate tasks call; the Spark job itself is tested elsewhere.
    def fake_compute_hours(settings, hours, *, app_name):
        report = jobs.hourly.RunReport()
        for hour in hours:
            report.computed[hour.strftime("%Y-%m-%dT%H:00:00Z")] = STATS
            report.computed_hours.append(hour)
        return report

    monkeypatch.setattr(jobs.hourly, "compute_hours", fake_compute_hours)
    earlier = datetime(2026, 11, 27, 8, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger="tally.app.pipeline"):
        compute(Settings(data_dir=tmp_path), [HOUR], Stale(recompute=[earlier]), app_name="test")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("run statistics")]
    assert lines == [
        f"run statistics {hour}: rows read 1000, valid 990, invalid 10 (bad_amount 7, missing_event_id 3), "
        "duplicates 2, counted 988, application 12.3s for 24 hour(s), input files 2"
        for hour in ("2026-11-27T08:00:00Z", "2026-11-27T10:00:00Z")
    ]
