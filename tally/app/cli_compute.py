"""The ``tally`` commands that compute: generate sample data, check specs, run and backfill hours.

Spark (jobs/) is imported inside each command, so loading this module (for ``tally --help``,
``status`` or ``serve``) stays light.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tally.core.layout import HourError, format_hour, hours_between, parse_hour, parse_instant
from tally.core.settings import Settings
from tally.core.spec import MetricSpec, SpecError

if TYPE_CHECKING:  # the job module imports pyspark; keep `tally --help` and `serve` light
    from cache.publish import PublishReport
    from jobs.hourly import RunReport
    from jobs.spec_check import DimensionCardinality


def generate(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.progress import wanted
    from tally.app.generate import generate_hours

    start = parse_hour(args.start, name="--start")  # a date is its midnight
    if args.days is not None:
        if args.days < 1:
            raise ValueError("--days must be at least 1")
        end = start + timedelta(days=args.days)
    else:
        end = parse_instant(args.end, name="--end")
    hours = list(hours_between(start, end))
    if not hours:
        raise HourError("--start/--end: the range holds no whole hour")
    summary = generate_hours(settings.data_dir, hours, args.events_per_hour, seed=args.seed, progress=wanted())
    print(
        f"wrote {summary.rows} rows in {summary.files} files for {summary.hours} hours "
        f"under {settings.data_dir / 'raw' / 'events'}"
    )
    return 0


def check_spec(args: argparse.Namespace, settings: Settings) -> int:
    from tally.core.spec import load_spec

    paths = [Path(p) for p in args.paths] or [settings.spec_path]
    loaded, failed = [], False
    for path in paths:  # structural problems: found before Spark starts
        try:
            loaded.append((path, load_spec(path)))
        except SpecError as exc:
            print_problems(args.command, exc)
            failed = True
    if loaded:
        from jobs.session import active_session, build_session
        from jobs.spec_check import data_cardinality, sql_problems

        hour = parse_hour(args.data, name="--data") if args.data else None
        # The analyzer needs no cluster: one small local session checks every expression of every spec
        # (or the warm Connect server, when SPARK_REMOTE names one: no JVM start at all).
        # A session already running (an embedding process, the test suite) is not ours to stop.
        remote = settings.spark_remote
        owned = active_session(remote) is None
        spark = build_session("local[1]", app_name="tally-check-spec", remote=remote)
        try:
            for path, spec in loaded:
                problems = sql_problems(spark, spec, path)
                if problems:
                    print_problems(args.command, SpecError(problems))
                    failed = True
                    continue
                _print_summary(path, spec)
                if hour is not None:  # a fold is a warning: the exit code stays 0
                    _print_cardinality(hour, data_cardinality(spark, settings.data_dir, spec, hour))
        finally:
            if owned:
                spark.stop()
    return 1 if failed else 0


def print_problems(command: str, exc: SpecError) -> None:
    for problem in exc.problems:
        print(f"tally {command}: error: {problem}", file=sys.stderr)


def _print_summary(path: Path, spec: MetricSpec) -> None:
    print(f"{path}: ok")
    for source in spec.sources:
        print(
            f"  source {source.name}: {len(source.columns)} columns, {len(source.dimensions)} dimensions, "
            f"{len(source.reasons)} invalid reasons, {len(spec.stored_of(source.name))} stored metrics; "
            f"{source.path}"
        )
    ratios = len(spec.metrics) - len(spec.stored)
    slices = sum(len(m.slice_dimension_sets()) for m in spec.stored)
    print(f"  metrics: {len(spec.metrics)} ({len(spec.stored)} stored, {ratios} ratios)")
    print(f"  slices per hour: {slices} slice sets of stored metrics (each one row per combination of values seen)")


def _print_cardinality(hour: datetime, found: list[DimensionCardinality]) -> None:
    print(f"  cardinality in {format_hour(hour)} (max_values: values kept an hour by rows; the rest become 'other'):")
    for dim in found:
        verdict = (
            f"WARNING: would fold {dim.rows_folded:,} rows of {dim.distinct_values - dim.max_values:,} values "
            "into 'other'"
            if dim.folds
            else "ok"
        )
        print(
            f"    source {dim.source} dimension {dim.dimension}: {dim.distinct_values:,} distinct values "
            f"(max_values {dim.max_values:,}): {verdict}"
        )
    if not found:
        print("    no stored metric slices by a dimension")


def run(args: argparse.Namespace, settings: Settings) -> int:
    hour = parse_hour(args.hour, name="--hour")
    if args.no_publish:
        return _compute_and_publish(settings, [hour], publish=False, strict=True)
    # What one tally_hourly run does: look back for stale hours, compute, publish.
    from tally.app.pipeline import compute, find_stale, late_input_problems, lookback, publish_settings_hours

    stale = find_stale(settings, lookback(hour, settings.late_data_horizon_hours))
    computed = compute(settings, [hour], stale, app_name="tally_run")
    print(json.dumps(computed.stats, indent=2))
    result = publish_settings_hours(settings, [parse_hour(h) for h in computed.publish])
    print(f"{publish_summary(result)}: {', '.join(computed.publish)}")
    if problem := late_input_problems(computed.failed):
        print(f"tally run: error: {problem}", file=sys.stderr)
        return 1
    return 0


def backfill(args: argparse.Namespace, settings: Settings) -> int:
    start, end = parse_instant(args.start, name="--start"), parse_instant(args.end, name="--end")
    hours = list(hours_between(start, end))
    if not hours:
        raise HourError("--start/--end: the range holds no whole hour")
    return _compute_and_publish(settings, hours, publish=not args.no_publish, strict=False)


def _compute_and_publish(settings: Settings, hours: list, *, publish: bool, strict: bool) -> int:
    from jobs import progress
    from jobs.hourly import compute_hours, require_complete

    if publish:  # fail before the Spark work if the results could not be published
        from cache.client import connect

        connect(settings.redis_url).close()
    # One Spark application computes every hour in one batch: the bar follows its tasks.
    show = progress.wanted()
    with progress.spark_tasks(f"computing {len(hours)} hour(s)", enabled=show):
        report = compute_hours(settings, hours)
    _print_report(report, detailed=len(hours) == 1)
    if strict:
        require_complete(report, hours)
    if publish and report.computed_hours:
        from functools import partial

        from tally.app.pipeline import publish_settings_hours

        read = partial(progress.hours, desc="reading rollups to publish", enabled=show)
        result = publish_settings_hours(settings, report.computed_hours, progress=read)
        print(publish_summary(result))
    return 0 if report.ok else 1


def publish_summary(result: PublishReport) -> str:
    """What a publish did, in one line.

    Into an empty prefix the rehydrate publishes every computed hour first, so the
    hours asked for come back "unchanged": they were published, just one step earlier.
    """
    if result.rehydrated:
        more = f", then {len(result.published)} newer build(s)" if result.published else ""
        return f"published {result.rehydrated} hour(s) (rehydrated from the rollups: the prefix was empty){more}"
    return f"published {len(result.published)} hour(s), {len(result.unchanged)} unchanged"


def _print_report(report: RunReport, *, detailed: bool) -> None:
    if detailed:
        print(json.dumps(report.computed, indent=2))
    else:
        keys: tuple[Literal["rows_read", "invalid_rows", "duplicate_rows"], ...] = (
            "rows_read",
            "invalid_rows",
            "duplicate_rows",
        )
        totals = {k: sum(h[k] for h in report.computed.values()) for k in keys}
        print(f"computed {len(report.computed)} hour(s): " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for hour, why in report.missing.items():
        print(f"not arrived {hour}: {why}")
    for hour, why in report.failed.items():
        print(f"FAILED {hour}: {why}", file=sys.stderr)


def compact(args: argparse.Namespace, settings: Settings) -> int:
    """``tally compact``: rollup retention, then compaction of old days (pyarrow only, no Spark)."""
    from tally.app.pipeline import compact_rollups

    upkeep = compact_rollups(settings, dry_run=args.dry_run)
    prefix = "would have " if args.dry_run else ""
    for line in upkeep.lines():
        print(f"{prefix}{line}")
    folded = sum(c.files_before - c.files_after for c in upkeep.compacted)
    print(
        f"{prefix}compacted {len(upkeep.compacted)} day(s) ({folded} file(s) fewer), expired {len(upkeep.expired)} "
        f"day(s) under {settings.data_dir / 'rollups'} (compact_after_days {settings.compact_after_days}, "
        f"rollup_retention_days {settings.rollup_retention_days}; 0 = off)"
    )
    return 0
