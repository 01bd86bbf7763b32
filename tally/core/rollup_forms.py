"""The two forms an hour's durable rollup and statistics are stored in, and which one is the hour's.

* **hourly**: what the job writes, a folder per hour (:func:`tally.core.layout.rollup_hour_dir`,
  :func:`~tally.core.layout.stats_hour_dir`); complete once its statistics exist.
* **daily**: what compaction (:mod:`tally.core.compaction`) leaves for a whole UTC day, one
  rollup file and one statistics file (:func:`~tally.core.layout.rollup_day_file`,
  :func:`~tally.core.layout.stats_day_file`). Each hour's rows are one row group, under an
  ``hour`` column; the file's metadata lists the hours it holds with each hour's own
  Arrow schema, so an hour reads back with exactly the columns and types it was written with.
  The statistics file is replaced after the rollup file: an hour is in the day form when the
  statistics file lists it.

An hour's **complete hourly partition wins** over the day file: it is newer (late data
recomputed an hour of a compacted day, or compaction stopped before removing it). This
module owns that rule; every reader (:mod:`tally.core.rollup`, :func:`tally.core.runstats.built_hours`)
goes through it.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tally.core.layout import rollup_day_file, rollup_hour_dir, stats_day_file, stats_hour_dir

if TYPE_CHECKING:  # pyarrow is imported inside the functions: `tally --help` stays light
    import pyarrow as pa
    import pyarrow.parquet as pq

# The column of a day file that says which hour (``HH``, as the partition folder writes it) a row is of.
HOUR_COLUMN = "hour"
# The day file's schema metadata: hour -> {"schema": base64 Arrow IPC schema, "row_groups": [...]}.
HOURS_METADATA = b"tally.hours"

Form = Literal["hourly", "daily"]


def hour_text(hour: datetime) -> str:
    """The ``HH`` an hour is filed under in its day (the ``hour=`` of its partition)."""
    return f"{hour.hour:02d}"


# --- the day file format ------------------------------------------------------------


def write_day_file(path: Path, tables: Mapping[str, pa.Table]) -> int:
    """Write the hours' tables (by ``HH``) as one day file, atomically; return its size in bytes.

    Written to a hidden temporary file in the same folder, then renamed over ``path``
    (``os.replace``): a reader sees the old file or the new one, never a part.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    hours = sorted(tables)
    schemas = [tables[h].schema.remove_metadata() for h in hours]
    unified = pa.unify_schemas(
        [*schemas, pa.schema([(HOUR_COLUMN, pa.string())])], promote_options="permissive"
    ).remove_metadata()
    entries: dict[str, dict[str, object]] = {}
    group = 0
    for h, schema in zip(hours, schemas, strict=True):
        count = 1 if tables[h].num_rows else 0  # one row group per hour with rows (row_group_size below)
        encoded = base64.b64encode(schema.serialize().to_pybytes()).decode()
        entries[h] = {"schema": encoded, "row_groups": list(range(group, group + count))}
        group += count
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with pq.ParquetWriter(temporary, unified.with_metadata({HOURS_METADATA: json.dumps(entries)})) as writer:
            for h in hours:
                table = tables[h]
                if table.num_rows:
                    writer.write_table(_widened(table, h, unified), row_group_size=table.num_rows)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.stat().st_size


def _widened(table: pa.Table, hh: str, schema: pa.Schema) -> pa.Table:
    """One hour's table with every column of the day file (absent ones null) and its ``hour``."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name == HOUR_COLUMN:
            columns.append(pa.array([hh] * table.num_rows, pa.string()))
        elif field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass(frozen=True)
class _Footer:
    """A day file's parsed footer: its Parquet metadata, and each hour's schema and row groups."""

    metadata: pq.FileMetaData
    schemas: dict[str, pa.Schema]
    row_groups: dict[str, list[int]]


@lru_cache(maxsize=128)
def _read_footer(path: str, _mtime_ns: int, _size: int) -> _Footer:
    """Parsed once per version of the file (the key includes its modification time and size):
    a rehydrate reads each day file's footer once, not once per hour."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    entries = json.loads((metadata.schema.to_arrow_schema().metadata or {})[HOURS_METADATA])
    schemas = {hh: pa.ipc.read_schema(pa.py_buffer(base64.b64decode(e["schema"]))) for hh, e in entries.items()}
    return _Footer(metadata, schemas, {hh: list(e["row_groups"]) for hh, e in entries.items()})


def _footer(path: Path) -> _Footer | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _read_footer(str(path), stat.st_mtime_ns, stat.st_size)


def day_file_hours(path: Path) -> set[str]:
    """The hours (``HH``) a day file holds, from its footer only; empty when there is no file."""
    footer = _footer(path)
    return set(footer.schemas) if footer else set()


def read_day_hours(path: Path, hours: Iterable[str]) -> dict[str, pa.Table]:
    """The hours' tables from a day file, each with the columns and types it was written with."""
    import pyarrow.parquet as pq

    footer = _footer(path)
    if footer is None:
        raise FileNotFoundError(f"day file {path} is gone (compacted again or expired meanwhile)")
    file = pq.ParquetFile(path, metadata=footer.metadata)
    tables = {}
    for hh in hours:
        schema = footer.schemas[hh]
        if footer.row_groups[hh]:
            tables[hh] = file.read_row_groups(footer.row_groups[hh], columns=schema.names).cast(schema)
        else:
            tables[hh] = schema.empty_table()
    return tables


# --- which form is an hour's --------------------------------------------------------


def has_parquet(folder: Path) -> bool:
    return any(folder.glob("*.parquet"))


def hourly_complete(data_dir: Path, hour: datetime) -> bool:
    """Whether the hour's own partition was written to the end (its statistics exist)."""
    return has_parquet(stats_hour_dir(data_dir, hour)) and rollup_hour_dir(data_dir, hour).is_dir()


def day_form_hours(data_dir: Path, day: date) -> set[str]:
    """The hours (``HH``) the day's compacted form holds (both of its files are there)."""
    listed = day_file_hours(stats_day_file(data_dir, day))
    return listed if listed and rollup_day_file(data_dir, day).is_file() else set()


def complete_form(data_dir: Path, hour: datetime) -> Form | None:
    """Where the hour's complete rollup is read from: its own partition first, else its day file."""
    if hourly_complete(data_dir, hour):
        return "hourly"
    if hour_text(hour) in day_form_hours(data_dir, hour.date()):
        return "daily"
    return None


def read_rollup_table(data_dir: Path, hour: datetime, form: Form) -> pa.Table:
    """The hour's rollup rows (no partition columns) from the given form."""
    import pyarrow.parquet as pq

    if form == "hourly":
        return pq.read_table(rollup_hour_dir(data_dir, hour))
    return read_day_hours(rollup_day_file(data_dir, hour.date()), [hour_text(hour)])[hour_text(hour)]


def read_stats_tables(data_dir: Path, hours: Iterable[datetime]) -> dict[datetime, pa.Table]:
    """The statistics rows of each of ``hours`` that has them, each day file read once.

    An hour's complete partition first, then its day file, then statistics of its own
    partition alone (the job's crash left the rollup folder out; the readers decide).
    """
    import pyarrow.parquet as pq

    tables: dict[datetime, pa.Table] = {}
    from_days: dict[date, list[datetime]] = {}
    day_hours: dict[date, set[str]] = {}
    for hour in hours:
        if hourly_complete(data_dir, hour):
            tables[hour] = pq.read_table(stats_hour_dir(data_dir, hour))
            continue
        day = hour.date()
        if day not in day_hours:
            day_hours[day] = day_form_hours(data_dir, day)
        if hour_text(hour) in day_hours[day]:
            from_days.setdefault(day, []).append(hour)
        elif has_parquet(stats_hour_dir(data_dir, hour)):
            tables[hour] = pq.read_table(stats_hour_dir(data_dir, hour))
    for day, day_hours_wanted in from_days.items():
        read = read_day_hours(stats_day_file(data_dir, day), [hour_text(h) for h in day_hours_wanted])
        tables.update({h: read[hour_text(h)] for h in day_hours_wanted})
    return tables
