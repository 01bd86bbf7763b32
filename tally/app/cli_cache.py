"""The ``tally`` commands over Redis and the API: publish, rehydrate, rollback, redis-acl, status, storage, serve.

None of them starts Spark. Each imports what it needs inside, so `tally status` loads no
FastAPI and `tally serve` no pyspark (tests/test_status.py, tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from tally.core.layout import hours_between, parse_hour, parse_instant
from tally.core.settings import Settings

if TYPE_CHECKING:
    from cache.storage import StorageReport


def publish(args: argparse.Namespace, settings: Settings) -> int:
    from tally.app.pipeline import publish_settings_hours

    start, end = parse_instant(args.start, name="--start"), parse_instant(args.end, name="--end")
    result = publish_settings_hours(settings, list(hours_between(start, end)), force=args.force)
    print(f"published {', '.join(result.published) or 'nothing'}; unchanged: {len(result.unchanged)}")
    _print_webhooks(result.webhooks)
    return 0


def rehydrate(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.options import PublishOptions
    from cache.rehydrate import rehydrate as rehydrate_from_rollups
    from tally.app.notify import relay_webhooks
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
    _print_webhooks(relay_webhooks(client, settings))
    return 0


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.rollback import rollback_hour
    from tally.app.notify import relay_webhooks
    from tally.core.spec import load_spec

    hour = parse_hour(args.hour, name="--hour")
    client = connect(settings.redis_url)
    build = rollback_hour(
        client,
        KeyLayout(settings.redis_prefix),
        hour,
        spec=load_spec(settings.spec_path),
        events_keep=settings.events_keep,
    )
    print(f"{args.hour}: build {build} is live again")
    _print_webhooks(relay_webhooks(client, settings))
    return 0


def _print_webhooks(stats: dict[str, int]) -> None:
    if stats:
        print(f"webhooks: {stats['delivered']} delivered, {stats['failed']} failed, {stats['retries']} retries")


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


def storage(args: argparse.Namespace, settings: Settings) -> int:
    """Measure now (a full SCAN of the prefix), store the report for /health, and print it."""
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.storage import budget_bytes, measure, write_report

    client = connect(settings.redis_url)
    try:
        layout = KeyLayout(settings.redis_prefix)
        report = measure(
            client,
            layout,
            data_dir=settings.data_dir,
            budget=budget_bytes(settings.redis_budget_mb),
            hour_retention_days=settings.hour_retention_days,
        )
        write_report(client, layout, report)
    finally:
        client.close()
    print(json.dumps(report.to_json(), indent=2, sort_keys=True) if args.json else render_storage(report))
    return 0


def render_storage(report: StorageReport) -> str:
    """The human table: bytes per metric and tier, totals, growth per day and days until the budget."""
    tiers = [tier for tier, size in report.by_tier.items() if size or tier in ("hour", "day", "index")]
    rows = [(metric, [by_tier.get(t, 0) for t in tiers]) for metric, by_tier in report.by_metric.items()]
    rows.append(("(manifests, index)", [report.tier_bytes.get(t, {}).get("", 0) for t in tiers]))
    rows.append(("total", [report.by_tier[t] for t in tiers]))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{t:>12}" for t in tiers) + f"  {'all':>12}"]
    lines += [
        f"{name:<{width}}  " + "  ".join(f"{_size(n):>12}" for n in sizes) + f"  {_size(sum(sizes)):>12}"
        for name, sizes in rows
    ]
    lines.append("")
    lines.append(f"Redis under the prefix: {_size(report.redis_bytes)} in {report.keys} keys")
    if report.used_memory is not None:
        lines.append(f"Redis server used_memory: {_size(report.used_memory)}")
    if report.rollup_bytes is not None:
        lines.append(f"rollups on disk: {_size(report.rollup_bytes)}")
    for metric, slices in report.slices_per_hour.items():
        lines.append(f"slices per hour of {metric}: {slices['newest']:.0f} newest, {slices['mean']:.1f} mean (24 h)")
    growth = report.growth
    if growth is None:
        lines.append("growth per day: unknown (nothing published)")
    else:
        lines.append(f"growth per day: {_size(growth.per_day_bytes)} (measured on {growth.day}: {growth.basis})")
    if report.budget_bytes is None:
        lines.append("budget: none (set TALLY_REDIS_BUDGET_MB)")
    else:
        days = "unknown" if report.days_until_budget is None else f"{report.days_until_budget:.1f}"
        lines.append(f"budget: {_size(report.budget_bytes)}; days until reached: {days}")
    if report.warning:
        lines.append(f"WARNING: {report.warning}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard_api.server import serve as serve_api

    serve_api(host=args.host, port=args.port, settings=settings, access_log=args.access_log)
    return 0
