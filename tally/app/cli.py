"""The ``tally`` command: generate sample data, run and backfill hours, serve the API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from tally.core.layout import HourError, hours_between, parse_hour, parse_instant
from tally.core.settings import Settings, get_settings
from tally.core.spec import MetricSpec, SpecError

if TYPE_CHECKING:  # the job module imports pyspark; keep `tally --help` and `serve` light
    from cache.publish import PublishReport
    from jobs.hourly import RunReport


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    try:
        return args.handler(args, settings)
    except SpecError as exc:  # one line per problem, each naming the file, source or metric and field
        _print_problems(args.command, exc)
        return 1
    except (HourError, ValueError, RuntimeError, ConnectionError, redis.RedisError) as exc:
        print(f"tally {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, HourError) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tally", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write sample raw events in the input contract")
    gen.add_argument("--start", required=True, help="first UTC day (YYYY-MM-DD) or hour (2026-11-27T10:00Z)")
    length = gen.add_mutually_exclusive_group(required=True)
    length.add_argument("--days", type=int, help="how many days of hours from --start")
    length.add_argument("--end", help="end (exclusive) of the hours to write, e.g. 2026-11-28T00:00Z")
    gen.add_argument("--events-per-hour", required=True, type=int)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    gen.set_defaults(handler=_generate)

    check = sub.add_parser("check-spec", help="validate specs (structure and SQL) without reading any data")
    check.add_argument("paths", nargs="*", metavar="PATH", help="spec files (default TALLY_SPEC_PATH)")
    check.set_defaults(handler=_check_spec)

    run = sub.add_parser("run", help="aggregate and publish one hour (what tally_hourly runs)")
    run.add_argument("--hour", required=True, help="UTC hour, e.g. 2026-11-27T10:00Z")
    run.add_argument("--no-publish", action="store_true", help="write rollups only")
    run.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    run.set_defaults(handler=_run)

    backfill = sub.add_parser("backfill", help="aggregate and publish every hour in [start, end)")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--no-publish", action="store_true", help="write rollups only")
    backfill.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    backfill.set_defaults(handler=_backfill)

    publish = sub.add_parser("publish", help="publish already computed hours in [start, end) to Redis")
    publish.add_argument("--start", required=True)
    publish.add_argument("--end", required=True)
    publish.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    publish.add_argument("--force", action="store_true", help="publish even if a pre-publish check fails")
    publish.set_defaults(handler=_publish)

    rehydrate = sub.add_parser("rehydrate", help="rebuild Redis from the durable rollups (all, or [start, end))")
    rehydrate.add_argument("--start")
    rehydrate.add_argument("--end")
    rehydrate.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    rehydrate.set_defaults(handler=_rehydrate)

    rollback = sub.add_parser("rollback", help="serve an hour's previous build again")
    rollback.add_argument("--hour", required=True, help="UTC hour, e.g. 2026-11-27T10:00Z")
    rollback.set_defaults(handler=_rollback)

    acl = sub.add_parser("redis-acl", help="print the ACL SETUSER lines for Tally's writer and read-only API users")
    acl.add_argument("--writer-password", default="<writer-password>")
    acl.add_argument("--reader-password", default="<api-password>")
    acl.set_defaults(handler=_redis_acl)

    status = sub.add_parser("status", help="freshness of what Redis serves, and the newest runs' statistics")
    status.add_argument("--runs", type=int, default=10, help="how many of the newest computed hours to list")
    status.add_argument(
        "--max-lag",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit 1 when the newest hour ended longer ago than this (default TALLY_MAX_LAG_SECONDS, 7200)",
    )
    status.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    status.set_defaults(handler=_status)

    serve = sub.add_parser("serve", help="serve the read-only metrics API")
    serve.add_argument("--host", help="address to bind (default TALLY_API_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs speed)")
    serve.set_defaults(handler=_serve)
    return parser


def _generate(args: argparse.Namespace, settings: Settings) -> int:
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


def _check_spec(args: argparse.Namespace, settings: Settings) -> int:
    from tally.core.spec import load_spec

    paths = [Path(p) for p in args.paths] or [settings.spec_path]
    loaded, failed = [], False
    for path in paths:  # structural problems: found before Spark starts
        try:
            loaded.append((path, load_spec(path)))
        except SpecError as exc:
            _print_problems(args.command, exc)
            failed = True
    if loaded:
        from jobs.session import build_session
        from jobs.spec_check import sql_problems

        # The analyzer needs no cluster: one small local session checks every expression of every spec.
        spark = build_session("local[1]", app_name="tally-check-spec")
        try:
            checked = [(path, spec, sql_problems(spark, spec, path)) for path, spec in loaded]
        finally:
            spark.stop()
        for path, spec, problems in checked:
            if problems:
                _print_problems(args.command, SpecError(problems))
                failed = True
            else:
                _print_summary(path, spec)
    return 1 if failed else 0


def _print_problems(command: str, exc: SpecError) -> None:
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


def _run(args: argparse.Namespace, settings: Settings) -> int:
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


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
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
        keys = ("rows_read", "invalid_rows", "duplicate_rows")
        totals = {k: sum(h[k] for h in report.computed.values()) for k in keys}
        print(f"computed {len(report.computed)} hour(s): " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for hour, why in report.missing.items():
        print(f"not arrived {hour}: {why}")
    for hour, why in report.failed.items():
        print(f"FAILED {hour}: {why}", file=sys.stderr)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from tally.app.pipeline import publish_settings_hours

    start, end = parse_instant(args.start, name="--start"), parse_instant(args.end, name="--end")
    result = publish_settings_hours(settings, list(hours_between(start, end)), force=args.force)
    print(f"published {', '.join(result.published) or 'nothing'}; unchanged: {len(result.unchanged)}")
    return 0


def _rehydrate(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.publish import rehydrate
    from tally.core.spec import load_spec

    start = parse_instant(args.start, name="--start") if args.start else None
    end = parse_instant(args.end, name="--end") if args.end else None
    spec = load_spec(settings.spec_path)
    client = connect(settings.redis_url)
    count = rehydrate(
        client,
        KeyLayout(settings.redis_prefix),
        settings.data_dir,
        spec,
        start=start,
        end=end,
        superseded_ttl=settings.superseded_ttl_seconds,
    )
    print(f"rehydrated {count} hour(s) from {settings.data_dir / 'rollups'}")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.publish import rollback_hour
    from tally.core.spec import load_spec

    hour = parse_hour(args.hour, name="--hour")
    client = connect(settings.redis_url)
    build = rollback_hour(client, KeyLayout(settings.redis_prefix), hour, spec=load_spec(settings.spec_path))
    print(f"{args.hour}: build {build} is live again")
    return 0


def _redis_acl(args: argparse.Namespace, settings: Settings) -> int:
    from cache.acl import acl_lines

    print(acl_lines(settings.redis_prefix, args.reader_password, args.writer_password))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from cache.keys import KeyLayout
    from cache.reads import open_client
    from tally.app.status import read_status, render
    from tally.core.spec import load_spec

    client = open_client(settings.redis_url)  # short timeouts: a dead Redis is reported in about a second
    try:
        status = read_status(
            client,
            KeyLayout(settings.redis_prefix),
            redis_url=settings.redis_url,
            runs=args.runs,
            max_lag_seconds=settings.max_lag_seconds if args.max_lag is None else args.max_lag,
            definitions=load_spec(settings.spec_path).fingerprints,
        )
    finally:
        client.close()
    print(json.dumps(status.to_json(), indent=2) if args.json else render(status))
    if status.error is not None:
        print(f"tally status: error: {status.error}", file=sys.stderr)
    return status.exit_code


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard_api.server import serve

    serve(host=args.host, port=args.port, settings=settings, access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
