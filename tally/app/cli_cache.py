"""The ``tally`` commands over Redis and the API: publish, rehydrate, rollback, redis-acl, status, serve.

None of them starts Spark. Each imports what it needs inside, so `tally status` loads no
FastAPI and `tally serve` no pyspark (tests/test_status.py, tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from tally.core.layout import hours_between, parse_hour, parse_instant
from tally.core.settings import Settings


def publish(args: argparse.Namespace, settings: Settings) -> int:
    from tally.app.pipeline import publish_settings_hours

    start, end = parse_instant(args.start, name="--start"), parse_instant(args.end, name="--end")
    result = publish_settings_hours(settings, list(hours_between(start, end)), force=args.force)
    print(f"published {', '.join(result.published) or 'nothing'}; unchanged: {len(result.unchanged)}")
    return 0


def rehydrate(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.options import PublishOptions
    from cache.rehydrate import rehydrate as rehydrate_from_rollups
    from tally.core.spec import load_spec

    start = parse_instant(args.start, name="--start") if args.start else None
    end = parse_instant(args.end, name="--end") if args.end else None
    spec = load_spec(settings.spec_path)
    client = connect(settings.redis_url)
    count = rehydrate_from_rollups(
        client,
        KeyLayout(settings.redis_prefix),
        settings.data_dir,
        spec,
        start=start,
        end=end,
        options=PublishOptions.from_settings(settings),
    )
    print(f"rehydrated {count} hour(s) from {settings.data_dir / 'rollups'}")
    return 0


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.rollback import rollback_hour
    from tally.core.spec import load_spec

    hour = parse_hour(args.hour, name="--hour")
    client = connect(settings.redis_url)
    build = rollback_hour(client, KeyLayout(settings.redis_prefix), hour, spec=load_spec(settings.spec_path))
    print(f"{args.hour}: build {build} is live again")
    return 0


def redis_acl(args: argparse.Namespace, settings: Settings) -> int:
    from cache.acl import acl_lines

    print(acl_lines(settings.redis_prefix, args.reader_password, args.writer_password))
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    from cache.keys import KeyLayout
    from cache.reads import open_client
    from tally.app.status import read_status, render
    from tally.core.spec import load_spec

    client = open_client(settings.redis_url)  # short timeouts: a dead Redis is reported in about a second
    try:
        current = read_status(
            client,
            KeyLayout(settings.redis_prefix),
            redis_url=settings.redis_url,
            runs=args.runs,
            max_lag_seconds=settings.max_lag_seconds if args.max_lag is None else args.max_lag,
            definitions=load_spec(settings.spec_path).fingerprints,
        )
    finally:
        client.close()
    print(json.dumps(current.to_json(), indent=2) if args.json else render(current))
    if current.error is not None:
        print(f"tally status: error: {current.error}", file=sys.stderr)
    return current.exit_code


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard_api.server import serve as serve_api

    serve_api(host=args.host, port=args.port, settings=settings, access_log=args.access_log)
    return 0
