"""Latency of the heaviest dashboard read: 90 daily points of 30-day rolling active users.

Publishes 120 days of realistic hourly builds (dense HLL sketches: ~2,000 users
an hour from a population of 60,000, 10 countries x 3 platforms) into Redis under
a private prefix, starts `tally serve` in its own process, and times requests
from this process, one at a time:

- target:  /v1/metrics/active_users?grain=day&window=30d  (90 points)
- peer:    /v1/metrics/active_users?grain=day             (the same 90 days, no window)
- floor:   /health                                        (the server's fixed cost)

Prints p50/p99 for each and writes results/window_latency.json. Issue 3's target:
p99 <= 50 ms for the windowed read on this machine. The server runs with its
response cache off, so every request computes its answer (the worst case: the
first read after a publish).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import datasketches
import httpx
import redis

from bench.server import bench_redis, start_server, stop, write_results
from cache.builds import HourBuild, build_id
from cache.keys import KeyLayout, slice_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "NL"]
PLATFORMS = ["web", "ios", "android"]
DAYS, USERS_PER_HOUR, POPULATION = 120, 2000, 60_000
REQUESTS = 200


def hour_build(hour: datetime, rng: random.Random, lg_k: int) -> HourBuild:
    users = rng.sample(range(POPULATION), USERS_PER_HOUR)
    sketches: dict[str, datasketches.hll_sketch] = {}
    counts: dict[str, float] = {}
    for user in users:
        country, platform = COUNTRIES[user % 10], PLATFORMS[user % 3]
        for labels in ({}, {"country": country}, {"platform": platform}, {"country": country, "platform": platform}):
            key = slice_id(labels)
            sketch = sketches.setdefault(key, datasketches.hll_sketch(lg_k, datasketches.tgt_hll_type.HLL_8))
            sketch.update(f"u{user}")
            counts[key] = counts.get(key, 0) + 1
    blobs = {k: s.serialize_compact() for k, s in sketches.items()}
    values = {"active_users": {k: round(s.get_estimate()) for k, s in sketches.items()}, "events": counts}
    sketch_map = {"active_users": blobs}
    return HourBuild(hour, build_id(values, sketch_map), values, sketch_map, {})


def publish_days(client: redis.Redis, layout: KeyLayout, days: int, end: datetime) -> None:
    """``days`` days of realistic hourly builds ending at ``end``, a day per publish."""
    spec = load_spec(DEFAULT_SPEC_PATH)
    rng = random.Random(1)
    day = end - timedelta(days=days)
    while day < end:
        builds = [hour_build(day + timedelta(hours=h), rng, spec.sketch_lg_k) for h in range(24)]
        publish_builds(client, layout, builds, PublishOptions(superseded_ttl=60), spec=spec)
        day += timedelta(days=1)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def time_requests(client: httpx.Client, url: str, count: int) -> list[float]:
    client.get(url).raise_for_status()  # warm up
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def main() -> int:
    end = datetime(2026, 11, 28, tzinfo=UTC)
    server = None
    with bench_redis("window") as (url, client, layout):
        try:
            print(f"publishing {DAYS * 24} hours ({DAYS} days) ...", flush=True)
            publish_days(client, layout, DAYS, end)
            port = 18000 + os.getpid() % 1000
            # The response cache off: this measures computing the answer, not replaying it.
            server = start_server(url, layout.prefix, port, {"TALLY_API_RESPONSE_CACHE_MB": "0"})
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            first = (end - timedelta(days=90)).date().isoformat()
            cases = {
                "window_30d_90_days": f"/v1/metrics/active_users?grain=day&window=30d&start={first}&end={end.date()}",
                "daily_90_days": f"/v1/metrics/active_users?grain=day&start={first}&end={end.date()}",
                "health": "/health",
            }
            results = {}
            for name, path in cases.items():
                samples = time_requests(http, path, REQUESTS)
                results[name] = {
                    "p50_ms": statistics.median(samples),
                    "p99_ms": percentile(samples, 99),
                    "requests": len(samples),
                }
            target = results["window_30d_90_days"]
            results["window_vs_daily_p99_ratio"] = target["p99_ms"] / results["daily_90_days"]["p99_ms"]
            results["target_p99_ms"] = 50
            results["target_met"] = target["p99_ms"] <= 50
            print(f"{'case':<24}{'p50 ms':>10}{'p99 ms':>10}")
            for name in cases:
                print(f"{name:<24}{results[name]['p50_ms']:>10.1f}{results[name]['p99_ms']:>10.1f}")
            print(
                f"windowed/plain p99 ratio: {results['window_vs_daily_p99_ratio']:.2f}; "
                f"target p99 <= 50 ms: {'met' if results['target_met'] else 'NOT met'}"
            )
            write_results("window_latency", results)
            return 0
        finally:
            stop(server)


if __name__ == "__main__":
    sys.exit(main())
