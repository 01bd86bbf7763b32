"""An hour of many small files (a streaming sink's): checked as one file at a time would be, computed the same.

The footer check reads footers in parallel and checks each distinct schema once
(jobs.input_check); these pin that the file it names is still the first bad one in
the folder's order, and that the job's rollup does not depend on how the rows are split.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.hourly import run_hours
from jobs.input_check import InputError, inspect_hour
from tally.core.layout import raw_hour_dir, raw_parquet_files, rollup_hour_dir
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import event

SPEC = load_spec(DEFAULT_SPEC_PATH)
SOURCE = SPEC.source("events")
HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
HOUR_TEXT = "2026-11-27T10:00:00Z"


def hour_events(count: int) -> pa.Table:
    """``count`` events of HOUR over a few users, types, countries and amounts (and one duplicate)."""
    rows = [
        event(
            f"e{i}",
            f"2026-11-27T10:{i % 60:02d}:{i % 7:02d}",
            user_id=f"u{i % 37}",
            session_id=f"s{i % 53}",
            event_type="purchase" if i % 5 == 0 else ("signup" if i % 11 == 0 else "page_view"),
            amount=round(1.25 + (i % 13) * 3.1, 2) if i % 5 == 0 else None,
            country=("US", "DE", "FR", None)[i % 4],
            platform=("web", "ios", "android")[i % 3],
        )
        for i in range(count)
    ]
    rows.append(dict(rows[3]))  # at-least-once delivery: one event twice, in different files once split
    frame = pd.DataFrame(rows)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["amount"] = frame["amount"].astype("float64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_split(data_dir: Path, table: pa.Table, files: int) -> list[Path]:
    """``table``'s rows in order as ``files`` files of consecutive rows; their paths, sorted."""
    folder = raw_hour_dir(data_dir, HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [round(i * table.num_rows / files) for i in range(files + 1)]
    for index, (start, stop) in enumerate(pairwise(bounds)):
        pq.write_table(table.slice(start, stop - start), folder / f"part-{index:05d}.parquet")
    return raw_parquet_files(data_dir, HOUR)


def test_many_files_are_checked_once_per_schema_and_counted(tmp_path: Path):
    table = hour_events(600)
    checked = inspect_hour(SOURCE, HOUR, write_split(tmp_path, table, 200))
    assert len(checked.files) == len(checked.encodings) == 200
    assert checked.rows == table.num_rows
    assert len(set(checked.encodings)) == 1


def test_the_first_bad_file_among_many_is_named(tmp_path: Path):
    files = write_split(tmp_path, hour_events(600), 200)
    # Two bad files: a missing column in the 120th, a wrong type in the 150th. A serial check
    # names the 120th; so must the parallel one, whichever footer it happens to read first.
    pq.write_table(pq.read_table(files[119]).drop_columns(["session_id"]), files[119])
    later = pq.read_table(files[149])
    pq.write_table(later.set_column(1, "event_time", later["event_time"].cast(pa.string())), files[149])
    with pytest.raises(InputError) as raised:
        inspect_hour(SOURCE, HOUR, files)
    assert str(raised.value) == f"{files[119]}: missing required column 'session_id'"
    # An unreadable file is found with the footers, before any schema is checked (as before).
    files[180].write_bytes(b"not parquet")
    with pytest.raises(InputError, match=f"^{files[180]}: not a readable Parquet file"):
        inspect_hour(SOURCE, HOUR, files)


def test_a_bad_file_among_many_fails_the_hour_naming_it(spark, tmp_path: Path):
    files = write_split(tmp_path, hour_events(600), 200)
    bad = files[137]
    pq.write_table(pq.read_table(bad).drop_columns(["user_id"]), bad)
    report = run_hours(spark, tmp_path, SPEC, [HOUR])
    assert report.failed == {HOUR_TEXT: f"{bad}: missing required column 'user_id'"}
    assert not report.computed and not rollup_hour_dir(tmp_path, HOUR).exists()


def rollup(data_dir: Path) -> dict[tuple, float]:
    """The hour's rollup values by (metric, dimensions)."""
    frame = pd.read_parquet(rollup_hour_dir(data_dir, HOUR)).drop(columns="sketch")
    keys = [c for c in frame.columns if c != "value"]
    return {tuple(row[k] for k in keys): row["value"] for row in frame.astype(object).to_dict("records")}


def test_two_hundred_files_give_the_rollup_of_two(spark, tmp_path: Path):
    table = hour_events(600)
    many, few = tmp_path / "many", tmp_path / "few"
    write_split(many, table, 200)
    write_split(few, table, 2)
    reports = {name: run_hours(spark, folder, SPEC, [HOUR]) for name, folder in (("many", many), ("few", few))}
    assert all(r.ok and list(r.computed) == [HOUR_TEXT] for r in reports.values())
    counts = ("rows_read", "duplicate_rows", "invalid_rows", "counted_events")
    assert [reports["many"].computed[HOUR_TEXT][c] for c in counts] == [
        reports["few"].computed[HOUR_TEXT][c] for c in counts
    ]
    assert reports["many"].computed[HOUR_TEXT]["input_files"] == 200
    got, expected = rollup(many), rollup(few)
    assert got.keys() == expected.keys() and len(got) > 50
    # Sums may add in another order (a last-digit difference); the distinct counts and
    # quantiles of a few dozen values are exact in their sketches.
    assert got == pytest.approx(expected, rel=1e-12)
