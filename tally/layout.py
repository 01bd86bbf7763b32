"""Where data lives on disk, and how hours are named.

The input contract (``raw/events/dt=YYYY-MM-DD/hour=HH/*.parquet``) and every
derived location (rollups, run statistics, quarantine) are built here and
nowhere else. All hours are UTC, whole hours, timezone-aware datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ONE_HOUR = timedelta(hours=1)

# Sub-folders of TALLY_DATA_DIR.
RAW_EVENTS = Path("raw") / "events"
ROLLUPS_HOURLY = Path("rollups") / "hourly"
ROLLUPS_STATS = Path("rollups") / "stats"
QUARANTINE = Path("quarantine") / "events"


class HourError(ValueError):
    """An hour argument that is not a whole UTC hour."""


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


def format_hour(hour: datetime) -> str:
    """The canonical text of an hour, as used in keys, logs and the API."""
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def partition(hour: datetime) -> Path:
    """``dt=YYYY-MM-DD/hour=HH``: the folder of one hour in every table."""
    utc = hour.astimezone(UTC)
    return Path(f"dt={utc:%Y-%m-%d}") / f"hour={utc:%H}"


def hour_from_partition(dt: str, hour: str) -> datetime:
    return datetime.strptime(f"{dt}T{hour}", "%Y-%m-%dT%H").replace(tzinfo=UTC)


def raw_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / RAW_EVENTS / partition(hour)


def rollup_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / ROLLUPS_HOURLY / partition(hour)


def stats_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / ROLLUPS_STATS / partition(hour)


def quarantine_hour_dir(data_dir: Path, hour: datetime) -> Path:
    return data_dir / QUARANTINE / partition(hour)


def raw_parquet_files(data_dir: Path, hour: datetime) -> list[Path]:
    """The hour's input files, sorted; hidden and marker files are skipped."""
    folder = raw_hour_dir(data_dir, hour)
    return sorted(p for p in folder.glob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))


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


def built_fingerprints(data_dir: Path, hours: Iterable[datetime]) -> dict[datetime, str | None]:
    """For each of ``hours`` with a complete rollup: the input fingerprint it was built from.

    None for statistics written before fingerprints were recorded. One small file
    read per hour, shared by the late-data check and the unpublished-rollup check.
    """
    import pyarrow.parquet as pq

    built: dict[datetime, str | None] = {}
    for hour in hours:
        stats_dir = stats_hour_dir(data_dir, hour)
        if not any(stats_dir.glob("*.parquet")):
            continue
        table = pq.read_table(stats_dir)
        has_fingerprint = "input_fingerprint" in table.column_names and table.num_rows
        built[hour] = table.column("input_fingerprint")[0].as_py() if has_fingerprint else None
    return built


def computed_hours(data_dir: Path) -> list[datetime]:
    """Every hour with a complete durable rollup (its statistics are written last), sorted."""
    hours = []
    for folder in (data_dir / ROLLUPS_STATS).glob("dt=*/hour=*"):
        if any(folder.glob("*.parquet")):
            hours.append(hour_from_partition(folder.parent.name[3:], folder.name[5:]))
    return sorted(hours)
