"""Compaction and retention of the durable rollups (pyarrow only, no Spark).

**Compaction** folds the hourly partitions of a whole UTC day that ended more than
``compact_after_days`` ago into one rollup file and one statistics file
(:mod:`tally.core.rollup_forms` owns that format): the same rows, 2 files instead of
dozens. Per day, in an order that leaves every hour readable exactly once whenever it stops:

1. the rollup day file, then the statistics day file, each written to a temporary file and
   renamed into place (``os.replace``): until the statistics file lists an hour, its own
   partition is what readers use;
2. then each folded hour's partitions are removed (renamed away first, so no reader sees a
   half-deleted folder). Until then the complete partition wins over the day file, and
   holds the same rows.

An hour written again after its day was compacted (late data, a backfill) gets a new hourly
partition, which readers prefer; compacting the day again merges it in (the hourly rows win).
An hour whose partition changed while it was being compacted is left in place: it wins anyway.

**Retention** (``rollup_retention_days``) deletes both forms of days that ended longer ago.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tally.core.layout import (
    ROLLUPS_DAILY,
    ROLLUPS_DAILY_STATS,
    ROLLUPS_HOURLY,
    ROLLUPS_STATS,
    day_from_partition,
    day_partition,
    rollup_day_file,
    rollup_hour_dir,
    stats_day_file,
    stats_hour_dir,
)
from tally.core.rollup_forms import (
    day_form_hours,
    hour_text,
    hourly_complete,
    read_day_hours,
    write_day_file,
)

if TYPE_CHECKING:
    import pyarrow as pa

# The four trees a day's rollups live in: the hourly form, then the day form.
HOURLY_TREES: tuple[Path, ...] = (ROLLUPS_HOURLY, ROLLUPS_STATS)
DAY_TREES: tuple[Path, ...] = (ROLLUPS_DAILY, ROLLUPS_DAILY_STATS)
# What a folder being removed is renamed to first (hidden: Spark and pyarrow skip it).
REMOVING = ".removing-"


@dataclass(frozen=True)
class DayCompaction:
    """What compacting one day did (or, in a dry run, would do)."""

    day: date
    hours_folded: int  # hourly partitions folded into the day file
    hours_in_day: int  # hours the day file holds afterwards
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int | None  # None in a dry run (the day file is not written)

    def describe(self) -> str:
        after = "?" if self.bytes_after is None else str(self.bytes_after)
        return (
            f"{self.day:%Y-%m-%d}: {self.hours_folded} hourly partition(s) folded, {self.hours_in_day} hour(s) "
            f"in the day; files {self.files_before} -> {self.files_after}, bytes {self.bytes_before} -> {after}"
        )


def day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def is_older(day: date, now: datetime, days: int) -> bool:
    """Whether the UTC day ended at least ``days`` days before ``now``."""
    return day_end(day) + timedelta(days=days) <= now


def hourly_days(data_dir: Path) -> set[date]:
    """Days with any hourly partition (what compaction may fold)."""
    return {day_from_partition(p.name) for tree in HOURLY_TREES for p in (data_dir / tree).glob("dt=*") if p.is_dir()}


def stored_days(data_dir: Path) -> set[date]:
    """Days with anything stored, in either form."""
    day_folders = [p for tree in DAY_TREES for p in (data_dir / tree).glob("dt=*") if p.is_dir()]
    return hourly_days(data_dir) | {day_from_partition(p.name) for p in day_folders}


def day_files(data_dir: Path, day: date) -> list[Path]:
    """Every file of the day's rollups and statistics, both forms (hidden leftovers excluded)."""
    files = []
    for tree in (*HOURLY_TREES, *DAY_TREES):
        folder = data_dir / tree / day_partition(day)
        files += [p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder))]
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _snapshot(folders: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """What an hour's partition holds (names, sizes, modification times): a rewrite changes it."""
    return tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for folder in folders for p in sorted(folder.rglob("*"))
    )


def remove_folder(folder: Path) -> None:
    """Remove a folder so that no reader ever sees part of it: rename it away, then delete it."""
    if not folder.exists():
        return
    doomed = folder.with_name(f"{REMOVING}{folder.name}-{uuid.uuid4().hex}")
    folder.rename(doomed)
    shutil.rmtree(doomed)


def _sweep(data_dir: Path, day: date) -> None:
    """Delete what an earlier run left half-removed or half-written, and empty day folders."""
    for tree in (*HOURLY_TREES, *DAY_TREES):
        folder = data_dir / tree / day_partition(day)
        if not folder.is_dir():
            continue
        for leftover in folder.glob(f"{REMOVING}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in folder.glob(".*.tmp-*"):
            leftover.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()


def compact_day(data_dir: Path, day: date, *, dry_run: bool = False) -> DayCompaction | None:
    """Fold the day's complete hourly partitions into its day files; None when there is none to fold."""
    import pyarrow.parquet as pq

    hours = [day_end(day) - timedelta(hours=24 - i) for i in range(24)]
    folded = [h for h in hours if hourly_complete(data_dir, h)]
    if not folded:
        return None
    before = day_files(data_dir, day)
    folders = [f for h in folded for f in (rollup_hour_dir(data_dir, h), stats_hour_dir(data_dir, h))]
    folded_files = {p for folder in folders for p in folder.rglob("*")}
    already = day_form_hours(data_dir, day) - {hour_text(h) for h in folded}
    hours_in_day = len(already) + len(folded)
    files_after = len([p for p in before if p not in folded_files and not _in_day_form(data_dir, day, p)]) + 2
    bytes_before = sum(p.stat().st_size for p in before)
    if dry_run:
        return DayCompaction(day, len(folded), hours_in_day, len(before), files_after, bytes_before, None)
    snapshots = {h: _snapshot((rollup_hour_dir(data_dir, h), stats_hour_dir(data_dir, h))) for h in folded}
    rollups: dict[str, pa.Table] = {}
    stats: dict[str, pa.Table] = {}
    if already:  # the hours only the old day file holds keep its rows
        rollups.update(read_day_hours(rollup_day_file(data_dir, day), already))
        stats.update(read_day_hours(stats_day_file(data_dir, day), already))
    for h in folded:
        rollups[hour_text(h)] = pq.read_table(rollup_hour_dir(data_dir, h))
        stats[hour_text(h)] = pq.read_table(stats_hour_dir(data_dir, h))
    write_day_file(rollup_day_file(data_dir, day), rollups)
    write_day_file(stats_day_file(data_dir, day), stats)  # last: from now on it lists the folded hours
    for h in folded:
        if _snapshot((rollup_hour_dir(data_dir, h), stats_hour_dir(data_dir, h))) != snapshots[h]:
            continue  # written again meanwhile: newer than what was folded, and it wins on read
        remove_folder(stats_hour_dir(data_dir, h))  # first: the hour stops being complete at once
        remove_folder(rollup_hour_dir(data_dir, h))
    _sweep(data_dir, day)
    after = day_files(data_dir, day)
    return DayCompaction(
        day, len(folded), hours_in_day, len(before), len(after), bytes_before, sum(p.stat().st_size for p in after)
    )


def _in_day_form(data_dir: Path, day: date, path: Path) -> bool:
    return path in (rollup_day_file(data_dir, day), stats_day_file(data_dir, day))


def compact(data_dir: Path, now: datetime, after_days: int, *, dry_run: bool = False) -> list[DayCompaction]:
    """Compact every day that ended at least ``after_days`` days before ``now`` (0: compaction is off)."""
    if after_days <= 0:
        return []
    done = []
    for day in sorted(d for d in hourly_days(data_dir) if is_older(d, now, after_days)):
        result = compact_day(data_dir, day, dry_run=dry_run)
        if result is not None:
            done.append(result)
    return done


def compact_days(data_dir: Path, now: datetime, after_days: int) -> list[date]:
    """Compact the days due (see :func:`compact`); return the days compacted."""
    return [result.day for result in compact(data_dir, now, after_days)]


def expire_rollups(data_dir: Path, now: datetime, keep_days: int, *, dry_run: bool = False) -> list[date]:
    """Delete both forms of every day that ended at least ``keep_days`` days before ``now``; 0 keeps all.

    The statistics go first, so a day stopped half-way has no hour that looks complete.
    """
    if keep_days <= 0:
        return []
    expired = sorted(d for d in stored_days(data_dir) if is_older(d, now, keep_days))
    if dry_run:
        return expired
    for day in expired:
        for tree in (ROLLUPS_DAILY_STATS, ROLLUPS_STATS, ROLLUPS_DAILY, ROLLUPS_HOURLY):
            remove_folder(data_dir / tree / day_partition(day))
    return expired
