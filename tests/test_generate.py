"""The sample generator: days differ, an hour is the same however it is generated, traffic has a week and a trend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tally.app.cli import main
from tally.app.generate import (
    COUNTRIES,
    DUPLICATE_SHARE,
    INVALID_SHARE,
    SCHEMA,
    generate_hours,
    hour_tables,
    make_population,
)
from tally.core.layout import ONE_HOUR, raw_hour_dir

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


def day_totals(data_dir: Path, day: str) -> tuple[int, float]:
    """Rows and summed purchase amounts of one day's files, both files of every hour."""
    tables = [pq.read_table(path) for path in sorted((data_dir / "raw" / "events" / f"dt={day}").rglob("*.parquet"))]
    assert len(tables) == 48
    return sum(t.num_rows for t in tables), sum(pc.sum(t["amount"]).as_py() or 0.0 for t in tables)


def hour_bytes(data_dir: Path, hour: datetime) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(raw_hour_dir(data_dir, hour).iterdir())}


def test_days_generated_one_call_each_with_the_default_seed_differ(tmp_path: Path):
    # What a user does to extend the sample data: the second day used to repeat the first.
    for day in ("2026-11-20", "2026-11-21"):
        args = ["generate", "--start", day, "--days", "1", "--events-per-hour", "300", "--data-dir", str(tmp_path)]
        assert main(args) == 0
    first, second = day_totals(tmp_path, "2026-11-20"), day_totals(tmp_path, "2026-11-21")
    assert first[0] != second[0] and first[1] != second[1]


def test_an_hour_is_the_same_alone_in_a_range_and_in_any_order(tmp_path: Path):
    hours = [MONDAY + i * ONE_HOUR for i in range(6)]
    chosen = hours[3]
    generate_hours(tmp_path / "alone", [chosen], 300)
    generate_hours(tmp_path / "range", hours, 300)
    generate_hours(tmp_path / "reversed", hours[::-1], 300)
    alone = hour_bytes(tmp_path / "alone", chosen)
    assert set(alone) == {"part-00000.parquet", "late-00001.parquet"}
    assert alone == hour_bytes(tmp_path / "range", chosen) == hour_bytes(tmp_path / "reversed", chosen)
    assert all(hour_bytes(tmp_path / "range", h) == hour_bytes(tmp_path / "reversed", h) for h in hours)


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_data(tmp_path: Path):
    hours = [MONDAY + i * ONE_HOUR for i in range(3)]
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_hours(tmp_path / name, hours, 300, seed=seed)
    for hour in hours:
        assert hour_bytes(tmp_path / "a", hour) == hour_bytes(tmp_path / "b", hour)
        assert hour_bytes(tmp_path / "a", hour) != hour_bytes(tmp_path / "c", hour)


def test_users_return_from_hour_to_hour():
    population = make_population(7, 300)
    first, second = (
        set(hour_tables(population, hour, 300, 7)[0]["user_id"].to_pylist()) for hour in (MONDAY, MONDAY + ONE_HOUR)
    )
    # Zipf-like activity: the busiest users are in nearly every hour, which distinct counts over days rely on.
    assert len(first & second) > 0.2 * min(len(first), len(second))


def mean_rows(start: datetime, weeks: int, *, weekend: bool) -> float:
    population = make_population(7, 200)
    hours = [start + i * ONE_HOUR for i in range(weeks * 7 * 24)]
    rows = [hour_tables(population, h, 200, 7)[0].num_rows for h in hours if (h.weekday() >= 5) == weekend]
    return float(np.mean(rows))


def test_weekends_are_quieter_than_weekdays():
    ratio = mean_rows(MONDAY, 4, weekend=True) / mean_rows(MONDAY, 4, weekend=False)
    assert 0.70 < ratio < 0.78  # WEEKDAY_FACTORS: 0.8 / 1.08 = 0.74


def test_traffic_grows_by_the_same_factor_whichever_range_is_asked_for():
    later = MONDAY + timedelta(days=12 * 30 + 2)  # a Monday again, twelve 30-day periods on
    ratio = mean_rows(later, 1, weekend=False) / mean_rows(MONDAY, 1, weekend=False)
    assert 1.37 < ratio < 1.48  # 1.03 ** (362 / 30) = 1.43


def test_the_contract_shares_are_kept():
    population = make_population(7, 20_000)
    main_table, late = hour_tables(population, MONDAY + 10 * ONE_HOUR, 20_000, 7)
    n = main_table.num_rows
    assert main_table.schema == SCHEMA and late.schema == SCHEMA
    # Duplicates: copies of rows of the main file, in a second (late) file.
    assert late.num_rows == int(n * DUPLICATE_SHARE)
    assert set(late["event_id"].to_pylist()) <= set(main_table["event_id"].to_pylist())
    # Invalid rows: each way the contract names, one way per row.
    rows = main_table.to_pylist()
    hour_start = MONDAY + 10 * ONE_HOUR
    purchases = [r for r in rows if r["event_type"] == "purchase"]
    ways = [
        sum(r["user_id"] is None for r in rows),
        sum(r["event_id"] == "" for r in rows),
        sum(r["event_time"] < hour_start for r in rows),
        sum(r["amount"] is not None and r["amount"] < 0 for r in purchases),
        sum(r["amount"] is None for r in purchases),
    ]
    assert min(ways) >= 1 and sum(ways) == int(n * INVALID_SHARE)
    # Unknown dimensions: about 2% of users have no country; some sessions have no platform.
    assert 0.01 < float(np.mean(population.countries == len(COUNTRIES))) < 0.03
    assert 0 < main_table["country"].null_count < n and 0 < main_table["platform"].null_count < n


def test_an_hour_must_be_a_whole_hour_with_a_time_zone():
    population = make_population(7, 10)
    with pytest.raises(ValueError, match="not a whole hour"):
        hour_tables(population, MONDAY.replace(tzinfo=None), 10, 7)
    with pytest.raises(ValueError, match="not a whole hour"):
        hour_tables(population, MONDAY + timedelta(minutes=30), 10, 7)
