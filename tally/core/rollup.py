"""The rollup Parquet contract: what the job writes under ``rollups/`` and the publisher reads back.

An hour's rollup is a folder of Parquet files (:func:`tally.core.layout.rollup_hour_dir`),
or its rows in its compacted day's file (:mod:`tally.core.rollup_forms` owns both forms and
which one an hour is read from), in long form, one row per metric and slice: :data:`PARTITION_COLUMNS`, then
:data:`METRIC`, one text column per dimension of the spec (null where the slice
does not split by it), :data:`VALUE` (count, sum or distinct estimate) and
:data:`SKETCH` (HLL bytes for distinct counts, else null). Its run statistics
(:mod:`tally.core.runstats`) are written after it, so their presence marks the
rollup complete: no reader trusts a rollup folder without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tally.core.layout import (
    DAY_STATS_FILE,
    ROLLUPS_DAILY_STATS,
    ROLLUPS_STATS,
    day_from_partition,
    format_hour,
    hour_from_partition,
    rollup_hour_dir,
)
from tally.core.rollup_forms import complete_form, day_form_hours, read_rollup_table, read_stats_tables
from tally.core.runstats import combine, source_row

# The hour partition (folder names, and columns of the table read from the root).
PARTITION_COLUMNS: tuple[str, ...] = ("dt", "hour")
METRIC = "metric"
VALUE = "value"
SKETCH = "sketch"
# The columns of a rollup row after its dimensions.
VALUE_COLUMNS: tuple[str, ...] = (METRIC, VALUE, SKETCH)
# Column types (Spark SQL names) of every column but the partition ones; dimensions are text.
VALUE_TYPES: Mapping[str, str] = {METRIC: "string", VALUE: "double", SKETCH: "binary"}
DIMENSION_TYPE = "string"


class NotComputedError(RuntimeError):
    """The hour has no complete rollup to publish (or no earlier build to go back to)."""


@dataclass(frozen=True)
class HourRollup:
    """One hour's rollup rows (without partition columns) and its combined statistics."""

    hour: datetime
    rows: list[dict[str, Any]]
    stats: Mapping[str, Any]


def rollup_columns(dimensions: Sequence[str]) -> tuple[str, ...]:
    """Every column of a rollup under a spec with ``dimensions``, in the order the job writes them."""
    return (*PARTITION_COLUMNS, METRIC, *dimensions, VALUE, SKETCH)  # rollup_columns(()): no dimension may be so named


def rollup_schema_ddl(dimensions: Sequence[str]) -> str:
    """The rollup's schema as Spark DDL (``dt string, …, value double, sketch binary``)."""
    types = {**dict.fromkeys(PARTITION_COLUMNS, "string"), **dict.fromkeys(dimensions, DIMENSION_TYPE), **VALUE_TYPES}
    return ", ".join(f"`{name}` {types[name]}" for name in rollup_columns(dimensions))


def is_complete(data_dir: Path, hour: datetime) -> bool:
    """Whether the hour's rollup was written to the end (its statistics exist), in either form."""
    return complete_form(data_dir, hour) is not None


def read_hour_rollup(data_dir: Path, hour: datetime) -> HourRollup:
    """Read one hour's rollup rows and statistics; NotComputedError if it is not complete."""
    form = complete_form(data_dir, hour)
    if form is None:
        raise NotComputedError(
            f"hour {format_hour(hour)} has no complete rollup under {rollup_hour_dir(data_dir, hour)} "
            "(nor in its compacted day); run `tally run --hour` for it first"
        )
    stats_rows = read_stats_tables(data_dir, [hour])[hour].to_pylist()
    rows = read_rollup_table(data_dir, hour, form).to_pylist()
    return HourRollup(hour, rows, combine([source_row(row) for row in stats_rows]))


def computed_hours(data_dir: Path) -> list[datetime]:
    """Every hour with a complete durable rollup (its statistics are written last), in either form, sorted."""
    hours = set()
    for folder in (data_dir / ROLLUPS_STATS).glob("dt=*/hour=*"):
        if any(folder.glob("*.parquet")):
            hours.add(hour_from_partition(folder.parent.name[3:], folder.name[5:]))
    for stats_file in (data_dir / ROLLUPS_DAILY_STATS).glob(f"dt=*/{DAY_STATS_FILE}"):
        day = day_from_partition(stats_file.parent.name)
        hours.update(hour_from_partition(f"{day:%Y-%m-%d}", hh) for hh in day_form_hours(data_dir, day))
    return sorted(hours)
