"""Throughput and latency under load: 64 concurrent connections for 60 s on loopback.

Publishes 35 days of realistic hourly builds (see bench.window_latency) under a
private prefix, starts `tally serve` in its own process, and keeps 64 connections
busy with a dashboard's mix of queries (hourly and daily series, rolling windows,
breakdowns). The peer, measured in the same run with the same connections, is
`/health`: the server's fixed cost per request, so the ratio says how much of the
time is Tally's reading and computing.

Prints and writes results/load.json: requests, errors, throughput, p50/p99.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.server import bench_redis, start_server, stop, write_results
from bench.window_latency import percentile, publish_days

ROOT = Path(__file__).resolve().parents[1]
END = datetime(2026, 11, 28, tzinfo=UTC)
CONNECTIONS, SECONDS, DAYS = 64, 60.0, 35


def dashboard_queries(end: datetime = END) -> list[str]:
    """What a dashboard page asks for: last day by hour, last month by day, windows, breakdowns."""
    day, month = (end - timedelta(days=1)), (end - timedelta(days=30))
    hours = f"start={day:%Y-%m-%dT%H:%MZ}&end={end:%Y-%m-%dT%H:%MZ}"
    days = f"start={month.date()}&end={end.date()}"
    return [
        f"/v1/metrics/events?grain=hour&{hours}",
        f"/v1/metrics/events?grain=hour&{hours}&group_by=platform",
        f"/v1/metrics/active_users?grain=day&{days}",
        f"/v1/metrics/active_users?grain=day&{days}&window=7d",
        f"/v1/metrics/events?grain=day&{days}&group_by=country&limit=5",
        f"/v1/metrics/active_users?grain=day&{days}&country=US",
    ]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    statuses: dict[str, int]
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float


async def _load(base: str, paths: list[str], connections: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker(index: int) -> None:
            position = index
            while time.perf_counter() < deadline:
                path = paths[position % len(paths)]
                position += 1
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    return LoadResult(
        requests=total,
        errors=total - statuses["200"],
        statuses=dict(statuses),
        seconds=round(elapsed, 2),
        requests_per_second=round(total / elapsed, 1),
        p50_ms=round(statistics.median(latencies), 2) if latencies else float("nan"),
        p99_ms=round(percentile(latencies, 99), 2) if latencies else float("nan"),
    )


def run_load(base: str, paths: list[str], *, connections: int = CONNECTIONS, seconds: float = SECONDS) -> LoadResult:
    """Keep ``connections`` requests in flight against ``base`` for ``seconds``, cycling ``paths``."""
    return asyncio.run(_load(base, paths, connections, seconds))


def main() -> int:
    server = None
    with bench_redis("load") as (url, client, layout):
        try:
            print(f"publishing {DAYS} days of hourly builds ...", flush=True)
            publish_days(client, layout, DAYS, END)
            port = 19000 + os.getpid() % 1000
            server = start_server(url, layout.prefix, port)
            base = f"http://127.0.0.1:{port}"
            print(f"{CONNECTIONS} connections for {SECONDS:.0f} s: dashboard queries, then /health ...", flush=True)
            dashboard = run_load(base, dashboard_queries())
            health = run_load(base, ["/health"], seconds=SECONDS / 4)
            results = {
                "dashboard": asdict(dashboard),
                "health_peer": asdict(health),
                "throughput_vs_health": round(dashboard.requests_per_second / health.requests_per_second, 3),
                "connections": CONNECTIONS,
            }
            print(f"{'case':<12}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
            for name, r in (("dashboard", dashboard), ("/health", health)):
                print(
                    f"{name:<12}{r.requests:>10}{r.errors:>8}{r.requests_per_second:>9.1f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
                )
            print(f"dashboard throughput = {results['throughput_vs_health']:.2f} x /health's")
            write_results("load", results)
            return 0 if dashboard.errors == 0 and health.errors == 0 else 1
        finally:
            stop(server)


if __name__ == "__main__":
    sys.exit(main())
