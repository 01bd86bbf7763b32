"""Where data lives on disk, and how hours are named.

A source's hour folder comes from its spec ``path`` (``{YYYY}``, ``{MM}``, ``{DD}``,
``{HH}`` replaced by the UTC hour, relative to ``TALLY_DATA_DIR`` unless
absolute); the sample table's is ``raw/events/dt=YYYY-MM-DD/hour=HH``. Every
derived location (rollups, run statistics, each source's quarantine) is built
here and nowhere else. All hours are UTC, whole hours, timezone-aware datetimes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ONE_HOUR = timedelta(hours=1)

# The placeholders of a source's `path`, all of which must appear.
PATH_PLACEHOLDERS: tuple[str, ...] = ("{YYYY}", "{MM}", "{DD}", "{HH}")
# The sample table's folder (the default spec's source `events`).
SAMPLE_EVENTS_PATH = "raw/events/dt={YYYY}-{MM}-{DD}/hour={HH}"

# Sub-folders of TALLY_DATA_DIR.
ROLLUPS_HOURLY = Path("rollups") / "hourly"
ROLLUPS_STATS = Path("rollups") / "stats"
# The compacted form of whole UTC days (tally.core.compaction): one rollup file and one
# statistics file per day, the hours' rows kept apart by an ``hour`` column.
ROLLUPS_DAILY = Path("rollups") / "daily"
ROLLUPS_DAILY_STATS = Path("rollups") / "daily-stats"
DAY_ROLLUP_FILE = "rollup.parquet"
DAY_STATS_FILE = "stats.parquet"
QUARANTINE_ROOT = Path("quarantine")
QUARANTINE = QUARANTINE_ROOT / "events"  # the sample source's quarantine


class HourError(ValueError):
    """An hour argument that is not a whole UTC hour."""


class HourNotArrivedError(RuntimeError):
    """The hour's input folder does not exist yet; nothing is computed or published."""


# Hour text forms, each with its inverse: every reader and writer of one calls these.


def parse_instant(text: str, *, name: str = "time") -> datetime:
    """Parse an ISO-8601 instant; a value without offset is taken as UTC."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise HourError(f"{name}: {text!r} is not an ISO-8601 date or time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_hour(text: str, *, name: str = "hour") -> datetime:
    """Parse a whole UTC hour such as ``2026-11-27T10:00Z``."""
    value = parse_instant(text, name=name)
    if value != floor_hour(value):
        raise HourError(f"{name}: {text!r} is not on a whole hour")
    return value


def as_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (Airflow hands out pendulum subclasses Spark rejects)."""
    if value.tzinfo is None:
        raise HourError(f"{value!r} has no time zone; Tally hours are UTC")
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


# How instants are written where people read them (published_at, computed_at): UTC, with Z.
INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_instant(moment: datetime) -> str:
    """An instant as manifests and the API write it, e.g. ``2026-11-27T12:05:00.000000Z``."""
    return as_utc(moment).strftime(INSTANT_FORMAT)


def format_hour(hour: datetime) -> str:
    """The canonical text of an hour (``2026-11-27T10:00:00Z``): run reports, logs, manifests, the API."""
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def hour_field(hour: datetime) -> str:
    """The compact text of an hour in Redis keys and pointer fields: ``2026-11-27T10Z``."""
    utc = hour.astimezone(UTC)
    # Formatted by hand: readers build thousands of these per request, and strftime is slow.
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}Z"


def parse_hour_field(text: str) -> datetime:
    """Inverse of :func:`hour_field`."""
    return datetime.strptime(text, "%Y-%m-%dT%HZ").replace(tzinfo=UTC)


def day_field(day: date) -> str:
    """How a UTC day is written in Redis keys and fields: ``2026-11-27``."""
    # By hand, as hour_field: a long range's reads format hundreds of days per request.
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def parse_day_field(text: str) -> date:
    """Inverse of :func:`day_field`."""
    return date.fromisoformat(text)


# The ``dt`` and ``hour`` values of a partition as Spark datetime patterns, for the
# job's Spark columns (the same text as :func:`partition`).
PARTITION_DAY_PATTERN = "yyyy-MM-dd"
PARTITION_HOUR_PATTERN = "HH"


def partition(hour: datetime) -> Path:
    """``dt=YYYY-MM-DD/hour=HH``: the folder of one hour in every table."""
    utc = hour.astimezone(UTC)
    return Path(f"dt={utc:%Y-%m-%d}") / f"hour={utc:%H}"


def hour_from_partition(dt: str, hour: str) -> datetime:
    """Inverse of :func:`partition`, from its ``dt`` and ``hour`` values."""
    return datetime.strptime(f"{dt}T{hour}", "%Y-%m-%dT%H").replace(tzinfo=UTC)


# Hours and where their data lives.


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every whole hour in [start, end)."""
    hour = floor_hour(start)
    if hour < start:
        hour += ONE_HOUR
    while hour < end:
        yield hour
        hour += ONE_HOUR


def hour_folder(data_dir: Path, path_template: str, hour: datetime) -> Path:
    """A source's folder for ``hour``: its ``path`` with the placeholders filled in."""
    utc = hour.astimezone(UTC)
    relative = (
        path_template.replace("{YYYY}", f"{utc.year:04d}")
        .replace("{MM}", f"{utc.month:02d}")
        .replace("{DD}", f"{utc.day:02d}")
        .replace("{HH}", f"{utc.hour:02d}")
    )
    return data_dir / relative  # an absolute template stays absolute


def parquet_files(folder: Path) -> list[Path]:
    """A folder's input files, sorted; hidden and marker files are skipped (none for a missing folder)."""
    try:
        # One directory read: an entry knows whether it is a file without a stat of its own,
        # which an hour of thousands of small files would pay one by one (P9).
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(".parquet") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Sorted by name: within one folder, the order of the paths, without comparing Path objects.
    return [folder / name for name in sorted(names) if not name.startswith((".", "_"))]


def raw_hour_dir(data_dir: Path, hour: datetime) -> Path:
    """The sample table's folder of ``hour`` (what `tally generate` writes)."""
    return hour_folder(data_dir, SAMPLE_EVENTS_PATH, hour)


def rollup_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / ROLLUPS_HOURLY / partition(hour)


def stats_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / ROLLUPS_STATS / partition(hour)


def day_partition(day: date) -> str:
    """``dt=YYYY-MM-DD``: the folder of one UTC day (the ``dt`` level of :func:`partition`)."""
    return f"dt={day:%Y-%m-%d}"


def day_from_partition(name: str) -> date:
    """Inverse of :func:`day_partition`, from the folder name."""
    return date.fromisoformat(name.removeprefix("dt="))


def rollup_day_file(data_dir: Path, day: date) -> Path:
    """The compacted rollup of a whole UTC day."""
    return data_dir / ROLLUPS_DAILY / day_partition(day) / DAY_ROLLUP_FILE


def stats_day_file(data_dir: Path, day: date) -> Path:
    """The compacted run statistics of a whole UTC day (written after its rollup file)."""
    return data_dir / ROLLUPS_DAILY_STATS / day_partition(day) / DAY_STATS_FILE


def quarantine_dir(data_dir: Path, source: str) -> Path:
    """Where a source's invalid rows are kept, partitioned by hour (``quarantine/<source>``)."""
    return data_dir / QUARANTINE_ROOT / source


def quarantine_hour_dir(data_dir: Path, hour: datetime, source: str = "events") -> Path:
    return quarantine_dir(data_dir, source) / partition(hour)


def raw_parquet_files(data_dir: Path, hour: datetime) -> list[Path]:
    """The sample table's input files of ``hour``."""
    return parquet_files(raw_hour_dir(data_dir, hour))


def parse_range_hours(start: str, end: str, *, max_hours: int) -> list[datetime]:
    """The whole hours in [start, end), validated (ordered, non-empty, bounded)."""
    first, last = parse_instant(start, name="start"), parse_instant(end, name="end")
    if last <= first:
        raise HourError(f"end {end!r} must be after start {start!r}")
    hours = list(hours_between(first, last))
    if not hours:
        raise HourError(f"[{start}, {end}) holds no whole hour")
    if len(hours) > max_hours:
        raise HourError(f"[{start}, {end}) spans {len(hours)} hours; the limit is {max_hours}")
    return hours


def input_fingerprint(files: list[Path]) -> str:
    """A cheap fingerprint of an hour's input: its files' names, sizes and modification times.

    A late file, a rewritten file or a removed one changes it; reading no data.
    """
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def combined_fingerprint(per_source: dict[str, str]) -> str:
    """An hour's input fingerprint over all its sources (a single source's own, unchanged)."""
    import hashlib

    if len(per_source) == 1:
        return next(iter(per_source.values()))
    text = ";".join(f"{name}={fp}" for name, fp in sorted(per_source.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
