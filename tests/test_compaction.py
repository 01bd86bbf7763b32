"""Compaction of the durable rollups keeps every answer: reads, rehydrate, late-data fingerprints, retention.

Rollups are written with pyarrow as the job lays them out (tests/support/rollups.py): no Spark.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cache.options import PublishOptions
from cache.rehydrate import rehydrate
from tally.app.cli import main
from tally.app.pipeline import compact_rollups
from tally.core import compaction
from tally.core.compaction import compact, compact_days, day_files, expire_rollups
from tally.core.layout import rollup_day_file, rollup_hour_dir, stats_day_file, stats_hour_dir
from tally.core.rollup import computed_hours, is_complete, read_hour_rollup
from tally.core.rollup_forms import complete_form, read_rollup_table
from tally.core.runstats import built_hours
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import delete_prefix, dump_prefix
from tests.support.rollups import rollup_table, stats_table, synthetic_events, write_hour, write_synthetic_hour

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAY1, DAY2, RECENT = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 20)
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)  # DAY1 and DAY2 ended more than 7 days before; RECENT did not


def day_hours(day: date) -> list[datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [start + timedelta(hours=i) for i in range(24)]


OLD_HOURS = day_hours(DAY1) + day_hours(DAY2)
RECENT_HOUR = day_hours(RECENT)[3]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for i, hour in enumerate([*OLD_HOURS, RECENT_HOUR]):
        write_synthetic_hour(tmp_path, hour, SPEC, seed=i)
    # An hour written under an older spec, without the `platform` dimension: its rows keep their columns.
    narrow = rollup_table(SPEC, synthetic_events(99, 30)).drop_columns(["platform"])
    write_hour(tmp_path, OLD_HOURS[5], narrow, stats_table(SPEC, 30, "fp-narrow", datetime(2026, 1, 1, tzinfo=UTC)))
    return tmp_path


def snapshot(data_dir: Path) -> dict:
    """Every answer the readers give: rows and statistics of each hour, the hours, what they were built from."""
    hours = computed_hours(data_dir)
    return {
        "hours": hours,
        "rollups": {h: (r.rows, dict(r.stats)) for h in hours for r in [read_hour_rollup(data_dir, h)]},
        "built": built_hours(data_dir, hours),
        "schemas": {h: read_rollup_table(data_dir, h, complete_form(data_dir, h) or "hourly").schema for h in hours},
    }


def file_count(data_dir: Path) -> int:
    return sum(1 for p in (data_dir / "rollups").rglob("*") if p.is_file())


def test_compaction_keeps_every_hour_identical_in_fewer_files(data_dir: Path):
    before, files_before = snapshot(data_dir), file_count(data_dir)
    schemas_before = {h: s.remove_metadata() for h, s in before.pop("schemas").items()}
    done = compact(data_dir, NOW, after_days=7)
    assert [c.day for c in done] == [DAY1, DAY2]
    assert all(c.hours_folded == 24 and c.files_after == 2 and c.bytes_after for c in done)
    after = snapshot(data_dir)
    assert {h: s.remove_metadata() for h, s in after.pop("schemas").items()} == schemas_before  # same types
    assert after == before
    assert "platform" not in after["rollups"][OLD_HOURS[5]][0][0]  # the narrow hour kept its own columns
    assert all(complete_form(data_dir, h) == "daily" for h in OLD_HOURS)
    assert complete_form(data_dir, RECENT_HOUR) == "hourly"  # not old enough
    assert not rollup_hour_dir(data_dir, OLD_HOURS[0]).exists() and not stats_hour_dir(data_dir, OLD_HOURS[0]).exists()
    assert file_count(data_dir) == files_before - 2 * 48 + 4
    # Idempotent: nothing left to fold, nothing changes.
    assert compact_days(data_dir, NOW, 7) == [] and snapshot(data_dir) | {"schemas": None} == after | {"schemas": None}
    assert compact(data_dir, NOW, after_days=0) == []  # 0: off


def test_a_crash_after_the_day_files_reads_every_hour_once(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    before = snapshot(data_dir)
    removed: list[Path] = []

    def crash_after_one(folder: Path) -> None:
        if removed:
            raise KeyboardInterrupt("killed between writing the day files and removing the hours")
        removed.append(folder)
        real_remove(folder)

    real_remove = compaction.remove_folder
    monkeypatch.setattr(compaction, "remove_folder", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        compaction.compact_day(data_dir, DAY1)
    # The first hour lost its statistics only: its day file rows are read; the others read their own partition.
    assert complete_form(data_dir, OLD_HOURS[0]) == "daily" and complete_form(data_dir, OLD_HOURS[1]) == "hourly"
    assert snapshot(data_dir) == before
    monkeypatch.setattr(compaction, "remove_folder", real_remove)
    assert compact_days(data_dir, NOW, 7) == [DAY1, DAY2]
    assert snapshot(data_dir) | {"schemas": None} == before | {"schemas": None}
    assert not any(p.name.startswith(".") for p in (data_dir / "rollups").rglob("*"))  # leftovers swept


def test_a_crash_between_the_two_day_files_keeps_the_hourly_form(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    before = snapshot(data_dir)
    written: list[Path] = []
    real_write = compaction.write_day_file

    def crash_on_stats(path: Path, tables: dict) -> int:
        if written:
            raise KeyboardInterrupt("killed before the statistics day file")
        written.append(path)
        return real_write(path, tables)

    monkeypatch.setattr(compaction, "write_day_file", crash_on_stats)
    with pytest.raises(KeyboardInterrupt):
        compaction.compact_day(data_dir, DAY1)
    assert rollup_day_file(data_dir, DAY1).is_file() and not stats_day_file(data_dir, DAY1).exists()
    assert all(complete_form(data_dir, h) == "hourly" for h in day_hours(DAY1))
    assert snapshot(data_dir) == before


def test_an_hour_recomputed_after_compaction_wins_and_compacting_again_merges_it(data_dir: Path):
    compact_days(data_dir, NOW, 7)
    late = OLD_HOURS[7]
    old_rows = read_hour_rollup(data_dir, late).rows
    write_synthetic_hour(data_dir, late, SPEC, seed=500, events=90)  # what the job writes for late data
    assert complete_form(data_dir, late) == "hourly"
    recomputed = read_hour_rollup(data_dir, late)
    assert recomputed.rows != old_rows and recomputed.stats["rows_read"] == 90
    assert built_hours(data_dir, [late])[late].input_fingerprint == f"fp{500:014d}"
    others = {h: read_hour_rollup(data_dir, h).rows for h in OLD_HOURS if h != late}
    assert [c.hours_folded for c in compact(data_dir, NOW, 7)] == [1]  # only that hour is folded again
    assert complete_form(data_dir, late) == "daily" and not rollup_hour_dir(data_dir, late).exists()
    assert read_hour_rollup(data_dir, late) == recomputed
    assert {h: read_hour_rollup(data_dir, h).rows for h in OLD_HOURS if h != late} == others
    assert built_hours(data_dir, [late])[late].input_fingerprint == f"fp{500:014d}"


def test_an_incomplete_hourly_partition_does_not_shadow_the_day(data_dir: Path):
    compact_days(data_dir, NOW, 7)
    hour = OLD_HOURS[2]
    kept = read_hour_rollup(data_dir, hour)
    # The job died after writing the rollup and before the statistics: the hour is still the day's.
    write_hour(data_dir, hour, rollup_table(SPEC, synthetic_events(7, 5)), stats_table(SPEC, 5, "x", NOW))
    for path in stats_hour_dir(data_dir, hour).iterdir():
        path.unlink()
    assert complete_form(data_dir, hour) == "daily" and read_hour_rollup(data_dir, hour) == kept
    assert compact(data_dir, NOW, 7) == []  # nothing complete to fold


def served(client, layout) -> dict:
    """What readers are served: every values and sketches hash (a build's key names its id; the day
    aggregates), and the builds the pointers name."""
    dump = dump_prefix(client, layout)
    builds = {key: value for key, value in dump.items() if key.endswith((b":values", b":sketches"))}
    pointers = {
        key: {field: json.loads(v)["build"] for field, v in value.items()}
        for key, value in dump.items()
        if key.endswith(b":pointer") and isinstance(value, dict)
    }
    return {"builds": builds, "pointers": pointers, "keys": sorted(k for k in dump if b":manifest" in k)}


def test_rehydrate_serves_the_same_builds_before_and_after_compaction(data_dir: Path, redis_client, layout):
    options = PublishOptions(superseded_ttl=60)
    assert rehydrate(redis_client, layout, data_dir, SPEC, options) == 49
    before = served(redis_client, layout)
    assert before["builds"] and before["pointers"]
    delete_prefix(redis_client, layout)
    compact_days(data_dir, NOW, 7)
    assert rehydrate(redis_client, layout, data_dir, SPEC, options) == 49
    # Every hash the same, byte for byte: a quantile's day aggregate is deterministic too (cache.merges).
    assert served(redis_client, layout) == before


def test_retention_deletes_both_forms_of_older_days_only(data_dir: Path):
    assert compact_days(data_dir, datetime(2026, 3, 3, 12, tzinfo=UTC), 1) == [DAY1]  # DAY2 ended 12 h before
    assert complete_form(data_dir, OLD_HOURS[0]) == "daily" and complete_form(data_dir, OLD_HOURS[30]) == "hourly"
    # Keep 18 days back from NOW: DAY1 (ended 3-2) goes, DAY2 (ended 3-3, 17.5 days before) stays.
    assert expire_rollups(data_dir, NOW, keep_days=18, dry_run=True) == [DAY1]
    assert is_complete(data_dir, OLD_HOURS[0])  # a dry run deletes nothing
    assert expire_rollups(data_dir, NOW, keep_days=18) == [DAY1]
    assert day_files(data_dir, DAY1) == [] and not any(is_complete(data_dir, h) for h in day_hours(DAY1))
    assert computed_hours(data_dir) == [*day_hours(DAY2), RECENT_HOUR]
    assert expire_rollups(data_dir, NOW, keep_days=0) == []  # 0: kept forever


def test_compact_rollups_expires_then_compacts(data_dir: Path):
    settings = Settings(data_dir=data_dir, compact_after_days=7, rollup_retention_days=18)
    dry = compact_rollups(settings, now=NOW, dry_run=True)
    assert dry.expired == [DAY1] and [c.day for c in dry.compacted] == [DAY2] and dry.compacted[0].bytes_after is None
    assert len(computed_hours(data_dir)) == 49
    upkeep = compact_rollups(settings, now=NOW)
    assert upkeep.expired == [DAY1] and [c.day for c in upkeep.compacted] == [DAY2]
    assert computed_hours(data_dir) == [*day_hours(DAY2), RECENT_HOUR]


def test_tally_compact_prints_days_and_files(data_dir: Path, capsys: pytest.CaptureFixture[str]):
    # The data is from March 2026; the command compares with the real clock (at least 7 days later).
    files = file_count(data_dir)
    assert main(["compact", "--dry-run", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "would have compacted 2026-03-01: 24 hourly partition(s) folded" in out and file_count(data_dir) == files
    assert main(["compact", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "compacted 2026-03-02: 24 hourly partition(s) folded, 24 hour(s) in the day; files 48 -> 2" in out
    assert files == 98 and file_count(data_dir) == 6  # RECENT is more than 7 days old by the real clock too
