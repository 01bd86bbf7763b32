"""The ``tally`` command: generate sample data, run and backfill hours, serve the API."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import redis

from tally.app import cli_cache, cli_compute
from tally.core.layout import HourError
from tally.core.settings import get_settings
from tally.core.spec import SpecError

# This module is the parser and the dispatch; the handlers live in cli_compute (the commands
# that start Spark) and cli_cache (Redis and the API), each importing its heavy layer inside.


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
        cli_compute.print_problems(args.command, exc)
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
    gen.set_defaults(handler=cli_compute.generate)

    check = sub.add_parser("check-spec", help="validate specs (structure and SQL) without reading any data")
    check.add_argument("paths", nargs="*", metavar="PATH", help="spec files (default TALLY_SPEC_PATH)")
    check.add_argument(
        "--data",
        metavar="HOUR",
        help="also read this UTC hour's input and report each dimension's distinct values against its max_values",
    )
    check.add_argument("--data-dir", help="overrides TALLY_DATA_DIR (with --data)")
    check.set_defaults(handler=cli_compute.check_spec)

    run = sub.add_parser("run", help="aggregate and publish one hour (what tally_hourly runs)")
    run.add_argument("--hour", required=True, help="UTC hour, e.g. 2026-11-27T10:00Z")
    run.add_argument("--no-publish", action="store_true", help="write rollups only")
    run.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    run.set_defaults(handler=cli_compute.run)

    backfill = sub.add_parser("backfill", help="aggregate and publish every hour in [start, end)")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--no-publish", action="store_true", help="write rollups only")
    backfill.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    backfill.set_defaults(handler=cli_compute.backfill)

    publish = sub.add_parser("publish", help="publish already computed hours in [start, end) to Redis")
    publish.add_argument("--start", required=True)
    publish.add_argument("--end", required=True)
    publish.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    publish.add_argument("--force", action="store_true", help="publish even if a pre-publish check fails")
    publish.set_defaults(handler=cli_cache.publish)

    rehydrate = sub.add_parser("rehydrate", help="rebuild Redis from the durable rollups (all, or [start, end))")
    rehydrate.add_argument("--start")
    rehydrate.add_argument("--end")
    rehydrate.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    rehydrate.set_defaults(handler=cli_cache.rehydrate)

    compact = sub.add_parser(
        "compact",
        help="fold old days' hourly rollups into one file per day (TALLY_COMPACT_AFTER_DAYS) and delete days "
        "past TALLY_ROLLUP_RETENTION_DAYS",
    )
    compact.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    compact.add_argument("--data-dir", help="overrides TALLY_DATA_DIR")
    compact.set_defaults(handler=cli_compute.compact)

    rollback = sub.add_parser("rollback", help="serve an hour's previous build again")
    rollback.add_argument("--hour", required=True, help="UTC hour, e.g. 2026-11-27T10:00Z")
    rollback.set_defaults(handler=cli_cache.rollback)

    acl = sub.add_parser("redis-acl", help="print the ACL SETUSER lines for Tally's writer and read-only API users")
    acl.add_argument("--writer-password", default="<writer-password>")
    acl.add_argument("--reader-password", default="<api-password>")
    acl.set_defaults(handler=cli_cache.redis_acl)

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
    status.set_defaults(handler=cli_cache.status)

    storage = sub.add_parser(
        "storage", help="measure Redis bytes per metric and tier, rollup bytes, growth per day, days until the budget"
    )
    storage.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    storage.set_defaults(handler=cli_cache.storage)

    serve = sub.add_parser("serve", help="serve the read-only metrics API")
    serve.add_argument("--host", help="address to bind (default TALLY_API_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs speed)")
    serve.set_defaults(handler=cli_cache.serve)
    return parser


if __name__ == "__main__":
    sys.exit(main())
