"""Rehydrate from the durable rollups before and after compaction: files on disk and seconds.

Builds ``--days`` days of hourly rollups for the default spec without Spark (one
hour's rows, aggregated from synthetic events, written for every hour as the job lays
them out), rehydrates them all into Redis under its own prefix, compacts every day,
and rehydrates again. Prints one JSON line::

    python -m bench.compaction --days 365 --redis-url redis://127.0.0.1:6379/10
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.rehydrate import rehydrate
from tally.core.compaction import compact
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.support.rollups import rollup_table, stats_table, synthetic_events, write_hour

FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)


def rollup_files(data_dir: Path) -> tuple[int, int]:
    """(files, bytes) under ``rollups/``."""
    files = [p for p in (data_dir / "rollups").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def timed_rehydrate(client: redis.Redis, data_dir: Path, prefix: str) -> tuple[int, float]:
    """Hours rehydrated into an empty prefix, and the seconds it took; the prefix is deleted after."""
    layout = KeyLayout(prefix)
    spec = load_spec(DEFAULT_SPEC_PATH)
    started = time.perf_counter()
    hours = rehydrate(client, layout, data_dir, spec, PublishOptions(superseded_ttl=60))
    seconds = time.perf_counter() - started
    for key_batch in _batches(client.scan_iter(match=layout.all_keys_pattern(), count=5000)):
        client.delete(*key_batch)
    return hours, seconds


def _batches(keys: Iterable[bytes], size: int = 5000) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(days: int, redis_url: str, events_per_hour: int) -> dict[str, object]:
    spec = load_spec(DEFAULT_SPEC_PATH)
    rollup = rollup_table(spec, synthetic_events(1, events_per_hour))
    data_dir = Path(tempfile.mkdtemp(prefix="tally-bench-compaction-"))
    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-compaction-{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        for i in range(days * 24):
            hour = FIRST_DAY + timedelta(hours=i)
            write_hour(data_dir, hour, rollup, stats_table(spec, events_per_hour, f"fp{i:014d}", hour))
        build_seconds = time.perf_counter() - started
        files_before, bytes_before = rollup_files(data_dir)
        hours_before, seconds_before = timed_rehydrate(client, data_dir, f"{prefix}-hourly")
        started = time.perf_counter()
        compacted = compact(data_dir, FIRST_DAY + timedelta(days=days + 1), after_days=1)
        compact_seconds = time.perf_counter() - started
        files_after, bytes_after = rollup_files(data_dir)
        hours_after, seconds_after = timed_rehydrate(client, data_dir, f"{prefix}-daily")
    finally:
        client.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "bench": "compaction",
        "days": days,
        "hours": hours_before,
        "rows_per_hour": rollup.num_rows,
        "build_seconds": round(build_seconds, 2),
        "before": {"files": files_before, "bytes": bytes_before, "rehydrate_seconds": round(seconds_before, 2)},
        "compaction": {"days": len(compacted), "seconds": round(compact_seconds, 2)},
        "after": {
            "files": files_after,
            "bytes": bytes_after,
            "rehydrate_seconds": round(seconds_after, 2),
            "hours": hours_after,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--events-per-hour", type=int, default=400)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    print(json.dumps(run(args.days, args.redis_url, args.events_per_hour)))


if __name__ == "__main__":
    main()
