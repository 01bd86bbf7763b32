"""The job end to end on files: reading, contract errors, quarantine, idempotent rewrites."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.hourly import HourNotArrivedError, RunReport, require_some_arrived, run_hours
from jobs.input_check import InputError, check_footer
from tally.core.layout import format_hour, quarantine_hour_dir, raw_hour_dir, rollup_hour_dir, stats_hour_dir
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import event, write_events

H10 = datetime(2026, 11, 27, 10, tzinfo=UTC)
H11 = datetime(2026, 11, 27, 11, tzinfo=UTC)
SPEC = load_spec(DEFAULT_SPEC_PATH)


def totals(data_dir: Path, hour: datetime) -> dict[str, float]:
    table = pd.read_parquet(rollup_hour_dir(data_dir, hour))
    total = table[table[["event_type", "country", "platform"]].isna().all(axis=1)]
    return dict(zip(total.metric, total.value, strict=True))


def test_hour_is_computed_from_all_its_files_and_encodings(spark, tmp_path: Path):
    write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00", event_type="purchase", amount=4.0)])
    # A late file, written with microsecond timestamps instead of pandas' nanoseconds.
    write_events(
        tmp_path,
        H10,
        [
            event("b", "2026-11-27T10:30:00", user_id="u2"),
            event("a", "2026-11-27T10:00:00", event_type="purchase", amount=4.0),
        ],
        name="late.parquet",
        coerce_timestamps="us",
        allow_truncated_timestamps=True,
    )
    # Integer amounts are numbers too.
    folder = raw_hour_dir(tmp_path, H10)
    table = (
        pq.read_table(folder / "part-0.parquet")
        .set_column(5, "amount", pa.array([7], pa.int64()))
        .set_column(0, "event_id", pa.array(["c"]))
    )
    pq.write_table(table, folder / "ints.parquet")
    report = run_hours(spark, tmp_path, SPEC, [H10])
    assert report.ok and list(report.computed) == ["2026-11-27T10:00:00Z"]
    stats = report.computed["2026-11-27T10:00:00Z"]
    assert (stats["rows_read"], stats["duplicate_rows"], stats["counted_events"], stats["input_files"]) == (4, 1, 3, 3)
    got = totals(tmp_path, H10)
    assert got["events"] == 3 and got["orders"] == 2 and got["revenue"] == 11.0 and got["active_users"] == 2


def test_missing_required_column_fails_the_hour_naming_file_and_column(spark, tmp_path: Path):
    path = write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00")])
    pq.write_table(pq.read_table(path).drop_columns(["session_id"]), path)
    write_events(tmp_path, H11, [event("b", "2026-11-27T11:00:00")])
    report = run_hours(spark, tmp_path, SPEC, [H10, H11])
    assert report.failed == {"2026-11-27T10:00:00Z": f"{path}: missing required column 'session_id'"}
    # The other hour is unaffected.
    assert list(report.computed) == ["2026-11-27T11:00:00Z"] and totals(tmp_path, H11)["events"] == 1
    assert not rollup_hour_dir(tmp_path, H10).exists()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"event_id": [1]}), "missing required column 'event_time'"),
        (
            pa.table(
                {
                    **{
                        c: pa.array(["x"])
                        for c in ("event_id", "user_id", "session_id", "event_type", "country", "platform", "amount")
                    },
                    "event_time": pa.array(["2026"]),
                }
            ),
            "column 'event_time' has type string, expected timestamp",
        ),
    ],
)
def test_footer_check_names_the_problem(tmp_path: Path, table, message):
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=message):
        check_footer(path, SPEC.source("events"))


def test_not_parquet_is_named(tmp_path: Path):
    path = tmp_path / "junk.parquet"
    path.write_text("hello")
    with pytest.raises(InputError, match=f"{path}: not a readable Parquet file"):
        check_footer(path, SPEC.source("events"))


def test_missing_hour_is_not_computed_and_quiet_hour_is_zero(spark, tmp_path: Path):
    raw_hour_dir(tmp_path, H11).mkdir(parents=True)
    report = run_hours(spark, tmp_path, SPEC, [H10, H11])
    assert "2026-11-27T10:00:00Z" in report.missing and "does not exist" in report.missing["2026-11-27T10:00:00Z"]
    assert not rollup_hour_dir(tmp_path, H10).exists()
    assert set(totals(tmp_path, H11).values()) == {0.0}
    assert report.computed["2026-11-27T11:00:00Z"]["rows_read"] == 0


def test_rerun_replaces_exactly_the_hour_and_quarantine(spark, tmp_path: Path):
    write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00"), event(None, "2026-11-27T10:01:00")])
    write_events(tmp_path, H11, [event("b", "2026-11-27T11:00:00")])
    run_hours(spark, tmp_path, SPEC, [H10, H11])
    first = pd.read_parquet(rollup_hour_dir(tmp_path, H10)).sort_values(["metric", "value"]).reset_index(drop=True)
    quarantine = pd.read_parquet(tmp_path / "quarantine" / "events")
    assert quarantine.reason.tolist() == ["missing_event_id"]

    run_hours(spark, tmp_path, SPEC, [H10])  # same input: same rollup
    again = pd.read_parquet(rollup_hour_dir(tmp_path, H10)).sort_values(["metric", "value"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again)

    # The hour's input is corrected: its rollup and quarantine follow; hour 11 is untouched.
    for f in raw_hour_dir(tmp_path, H10).glob("*.parquet"):
        f.unlink()
    write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00"), event("c", "2026-11-27T10:02:00", user_id="u9")])
    run_hours(spark, tmp_path, SPEC, [H10])
    assert totals(tmp_path, H10)["active_users"] == 2
    assert totals(tmp_path, H11)["events"] == 1
    assert not (tmp_path / "quarantine" / "events" / "dt=2026-11-27" / "hour=10").exists()
    assert stats_hour_dir(tmp_path, H10).is_dir()


def test_many_files_give_one_quarantine_file_per_hour_and_the_job_logs_its_phases(spark, tmp_path: Path, caplog):
    for index in range(12):  # a streaming sink's small files, each with an invalid row
        rows = [event(f"e{index}", "2026-11-27T10:00:00"), event(None, f"2026-11-27T10:{index:02d}:00")]
        write_events(tmp_path, H10, rows, name=f"part-{index:02d}.parquet")
    write_events(tmp_path, H11, [event(None, "2026-11-27T11:00:00")])
    with caplog.at_level(logging.INFO, logger="jobs.batch"):
        run_hours(spark, tmp_path, SPEC, [H10, H11])
    for hour, invalid in ((H10, 12), (H11, 1)):
        [written] = list(quarantine_hour_dir(tmp_path, hour, "events").glob("*.parquet"))
        assert pq.read_metadata(written).num_rows == invalid
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("computed 2 hour(s) in ")]
    total, phases = line.removeprefix("computed 2 hour(s) in ").split(" s: ")
    seconds = {name: float(value) for name, value in (p.removesuffix(" s").rsplit(" ", 1) for p in phases.split(", "))}
    assert list(seconds) == ["finest slices", "rollup", "quarantine", "statistics"]
    assert all(value > 0 for value in seconds.values()) and sum(seconds.values()) <= float(total) + 0.01


@pytest.mark.slow  # spark-submit starts its own JVM and driver process
def test_spark_submit_runs_the_job_unchanged(tmp_path: Path):
    """The spark-submit entry point (what a cluster runs) computes the same rollups."""
    import os
    import subprocess
    import sys

    import pyspark

    write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00"), event("b", "2026-11-27T10:01:00", user_id="u2")])
    spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    main = Path(__file__).resolve().parents[1] / "tally" / "app" / "submit.py"
    env = {
        **os.environ,
        "TALLY_DATA_DIR": str(tmp_path),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [
            str(spark_submit),
            "--master",
            "local[1]",
            str(main),
            "--start",
            "2026-11-27T10:00Z",
            "--end",
            "2026-11-27T11:00Z",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"computed": ["2026-11-27T10:00:00Z"]' in result.stdout
    got = totals(tmp_path, H10)
    assert got["events"] == 2 and got["active_users"] == 2


def test_a_range_where_no_hour_arrived_is_refused_naming_the_folders():
    hours = [datetime(2026, 10, 1, h, tzinfo=UTC) for h in range(5)]
    why = {format_hour(h): f"input folder /data/raw/hour={h:%H} does not exist" for h in hours}
    with pytest.raises(HourNotArrivedError, match=r"none of the 5 hour\(s\).*hour=00 does not exist.*and 2 more"):
        require_some_arrived(RunReport(missing=why), hours)
    # One hour computed (or failing on its own) is a run to report, not a wrong range.
    require_some_arrived(RunReport(missing=dict(list(why.items())[:4]), computed_hours=hours[4:]), hours)
    require_some_arrived(RunReport(missing=dict(list(why.items())[:4]), failed={"x": "bad file"}), hours)
