"""`make bench`: Tally against the peers a user would pick instead, measured in one run.

Generates its own data under .tally/bench (deleted afterwards), measures P1-P7 of
issue 6 and the later figures (P7B, P8: one tally_hourly run in-process vs Spark
Connect, P9: many small files, P10, P11: SSE fan-out; see docs/performance.md),
prints a table and writes results/bench.json
and results/bench.png. Every figure is a ratio against a peer measured in the
same run (median of several repetitions); absolute figures are reported too,
but they depend on the machine and are not the target.

    python -m bench.suite            # everything, about 45 minutes on 2 cores
    python -m bench.suite P1 P4      # some of it
    python -m bench.suite chart      # redraw the chart from results/bench.json
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench import peers
from bench.hourly_run import p8_hourly_run
from bench.server import ROOT, bench_redis, start_server, staying_keys, stop
from bench.sketch_latency import p10_sketch_latency
from bench.small_files import p9_small_files
from bench.sse_fanout import p11_sse_fanout
from bench.wide_spec import p7b_wide_spec
from cache.builds import read_hour_build
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds, publish_hours
from cache.tiers import enforce_tiers
from tally.app.generate import generate_hours
from tally.core.layout import ONE_HOUR, partition, raw_parquet_files
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import Merge, MetricSpec, load_spec

RESULTS = ROOT / "results"
WORK = ROOT / ".tally" / "bench"
REPS = 3
# The 30-day data set behind P3, P4, P5 and P7: a mid-sized shop's traffic.
DAYS, EVENTS_PER_HOUR = 30, 10_000
FIRST_DAY = datetime(2026, 10, 1, tzinfo=UTC)
SERVER_CPU, LOAD_CPU = 0, 1  # P4: the server and the load generator each get one core
API_PATHS = {
    # 168 hourly points (the last week) and 30 daily points of active users.
    "hourly_168": "/v1/metrics/events?grain=hour&start=2026-10-24T00:00Z&end=2026-10-31T00:00Z",
    "dau_30d": "/v1/metrics/active_users?grain=day&start=2026-10-01&end=2026-10-31",
}


@dataclass
class Figure:
    id: str
    measure: str
    tally: str
    peer: str
    ratio: float
    target: str
    met: bool
    # For the chart: how far inside (> 1) or outside (< 1) the target the ratio is.
    headroom: float
    detail: dict[str, Any] = field(default_factory=dict)


def at_most(ratio: float, limit: float) -> tuple[bool, float]:
    return ratio <= limit, limit / ratio


def at_least(ratio: float, limit: float) -> tuple[bool, float]:
    return ratio >= limit, ratio / limit


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_time(action: Callable[[], Any], reps: int = REPS) -> tuple[float, list[float]]:
    samples = [timed(action) for _ in range(reps)]
    return statistics.median(samples), [round(s, 3) for s in samples]


class Bench:
    """Shared state: one Spark session, the 30-day data set, one Redis prefix."""

    def __init__(self, client: redis.Redis, redis_url: str, layout: KeyLayout) -> None:
        self.client, self.redis_url, self.layout = client, redis_url, layout
        self.spec = load_spec(DEFAULT_SPEC_PATH)
        self.figures: list[Figure] = []
        self._spark: Any = None
        self.spark_start_seconds: float | None = None
        self._month: Path | None = None

    @property
    def spark(self) -> Any:
        if self._spark is None:
            from jobs.session import build_session

            started = time.perf_counter()
            self._spark = build_session("local[2]", app_name="tally-bench")
            self.spark_start_seconds = round(time.perf_counter() - started, 2)
            print(f"  SparkSession start: {self.spark_start_seconds} s (reported, not part of any ratio)", flush=True)
        return self._spark

    def run_job(self, data_dir: Path, hours: list[datetime]) -> None:
        from jobs.hourly import run_hours

        report = run_hours(self.spark, data_dir, self.spec, hours)
        if not report.ok or len(report.computed_hours) != len(hours):
            raise RuntimeError(f"the job failed: {report.failed or report.missing}")

    @property
    def month(self) -> Path:
        """30 days of raw events, computed by the job and published under the bench prefix."""
        if self._month is None:
            data = WORK / "month"
            hours = month_hours()
            print(f"  generating {DAYS} days x {EVENTS_PER_HOUR:,} events/hour ...", flush=True)
            generate_hours(data, hours, EVENTS_PER_HOUR, seed=3)
            print("  backfilling them with the Spark job and publishing ...", flush=True)
            self.run_job(data, hours)
            for day in range(DAYS):
                publish_hours(
                    self.client,
                    self.layout,
                    data,
                    self.spec,
                    hours[day * 24 : day * 24 + 24],
                    PublishOptions(superseded_ttl=60),
                )
            self._month = data
        return self._month

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()


def month_hours() -> list[datetime]:
    return [FIRST_DAY + i * ONE_HOUR for i in range(DAYS * 24)]


def all_files(data_dir: Path, hours: list[datetime]) -> list[Path]:
    return [f for h in hours for f in raw_parquet_files(data_dir, h)]


def p1_spark_vs_duckdb(b: Bench) -> Figure:
    """P1: the job on a 1M-event hour vs DuckDB (issue 18's target: <= 4x)."""
    return _spark_vs_duckdb(b, "P1", 1_000_000, 4.0)


def p1b_spark_vs_duckdb_10m(b: Bench) -> Figure:
    """P1 at 10M events: Spark's fixed costs weigh less (issue 18's target: <= 3x)."""
    return _spark_vs_duckdb(b, "P1B", 10_000_000, 3.0)


def _spark_vs_duckdb(b: Bench, figure_id: str, events: int, target: float) -> Figure:
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    data = WORK / figure_id.lower()
    print(f"  generating a {events // 1_000_000}M-event hour ...", flush=True)
    rows = generate_hours(data, [hour], events, seed=1).rows
    spark_seconds, spark_samples = median_time(lambda: b.run_job(data, [hour]))
    con = peers.connect()
    files = raw_parquet_files(data, hour)
    out = WORK / f"{figure_id.lower()}-duckdb.parquet"
    duck_seconds, duck_samples = median_time(lambda: peers.run_rollup(con, b.spec, files, out))
    shutil.rmtree(data, ignore_errors=True)
    ratio = spark_seconds / duck_seconds
    met, headroom = at_most(ratio, target)
    return Figure(
        figure_id,
        f"Spark hourly job, 1 hour of {rows:,} rows, vs DuckDB (same metrics and slices)",
        f"{spark_seconds:.2f} s",
        f"{duck_seconds:.2f} s",
        ratio,
        f"<= {target:g}x",
        met,
        headroom,
        {
            "rows": rows,
            "spark_samples_s": spark_samples,
            "duckdb_samples_s": duck_samples,
            "spark_session_start_s": b.spark_start_seconds,
        },
    )


def p2_history(b: Bench) -> Figure:
    target = datetime(2026, 12, 1, 10, tzinfo=UTC)
    folders = {"1 day": WORK / "p2-1d", "60 days": WORK / "p2-60d"}
    print("  generating one hour with 1 day and with 60 days of history ...", flush=True)
    for days, folder in zip((1, 60), folders.values(), strict=True):
        history = [target - (i + 1) * ONE_HOUR for i in range(days * 24)]
        generate_hours(folder, history, 500, seed=2)
        generate_hours(folder, [target], 200_000, seed=4)
    # Give every history hour a rollup, statistics and quarantine (copies of the target's).
    b.run_job(folders["1 day"], [target])
    for days, folder in zip((1, 60), folders.values(), strict=True):
        _copy_outputs(folders["1 day"], folder, target, [target - (i + 1) * ONE_HOUR for i in range(days * 24)])
    samples: dict[str, list[float]] = {name: [] for name in folders}
    for _ in range(REPS):  # alternate, so drift hits both equally
        for name, folder in folders.items():
            samples[name].append(round(timed(lambda folder=folder: b.run_job(folder, [target])), 3))
    one, sixty = statistics.median(samples["1 day"]), statistics.median(samples["60 days"])
    ratio = sixty / one
    met, headroom = at_most(ratio, 1.1)
    return Figure(
        "P2",
        "one hour's job with 60 days of history in the data folder / with 1 day",
        f"{sixty:.2f} s",
        f"{one:.2f} s",
        ratio,
        "<= 1.1",
        met,
        headroom,
        {"samples_s": samples, "target_rows": 200_000},
    )


def _copy_outputs(source: Path, folder: Path, built: datetime, hours: list[datetime]) -> None:
    for table in ("rollups/hourly", "rollups/stats", "quarantine/events"):
        original = source / table / partition(built)
        if not original.is_dir():
            continue
        for hour in hours:
            copy = folder / table / partition(hour)
            if not copy.exists():
                shutil.copytree(original, copy)


def p3_backfill(b: Bench) -> Figure:
    from jobs.hourly import RunReport, plan_inputs
    from jobs.source import read_hours
    from jobs.transform import aggregate, deduplicate, valid_events, with_hour_placeholders, with_invalid_reason

    data = b.month
    hours = month_hours()[-168:]
    plans = plan_inputs(data, b.spec, hours, RunReport())
    source = b.spec.source("events")
    inputs = [p.inputs[source.name] for p in plans]

    def single_aggregation() -> None:
        classified = with_invalid_reason(read_hours(b.spark, source, inputs), source)
        events = deduplicate(valid_events(classified, source, b.spec), source)
        rollup = aggregate(with_hour_placeholders(events, hours), b.spec, source)
        rollup.write.mode("overwrite").parquet(str(WORK / "p3-single"))

    backfill_seconds, backfill_samples = median_time(lambda: b.run_job(data, hours))
    single_seconds, single_samples = median_time(single_aggregation)
    rows = sum(i.rows for i in inputs)  # from the footers plan_inputs already read
    ratio = backfill_seconds / single_seconds
    met, headroom = at_most(ratio, 1.3)  # issue 18 (was 1.5)
    return Figure(
        "P3",
        f"`tally backfill` of 168 hours ({rows:,} rows, one application) vs one aggregation of the same rows",
        f"{backfill_seconds:.2f} s",
        f"{single_seconds:.2f} s",
        ratio,
        "<= 1.3x",
        met,
        headroom,
        {"rows": rows, "backfill_samples_s": backfill_samples, "single_samples_s": single_samples},
    )


def _pinned(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def _load(port: int, paths: list[str], connections: int, seconds: float = 8.0) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "bench.loadgen", "--port", str(port), "--connections", str(connections)),
            *("--seconds", str(seconds), "--cpu", str(LOAD_CPU), *paths),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


@contextmanager
def _hello_server(port: int) -> Iterator[None]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.hello", str(port)],
        cwd=ROOT,
        preexec_fn=_pinned(SERVER_CPU),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                _get(port, "/hello")
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        stop(server)


@contextmanager
def _tally_server(b: Bench, port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    server = start_server(b.redis_url, b.layout.prefix, port, env)
    os.sched_setaffinity(server.pid, {SERVER_CPU})
    try:
        yield server
    finally:
        stop(server)


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


P4_ROUNDS = 3  # issue 18: P4 must hold every run, so one `make bench` measures it three times over


def _p4_round(b: Bench, port: int) -> dict[str, dict[str, Any]]:
    """One round of P4: the hello world, the replayed pair and the cold pair, 8 s per case."""
    runs: dict[str, dict[str, Any]] = {}
    with _hello_server(port + 1):
        for connections in (16, 64):
            runs[f"hello_{connections}"] = _load(port + 1, ["/hello"], connections)
    with _tally_server(b, port):
        for path in API_PATHS.values():
            status, _ = _get(port, path)
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}")
        for connections in (16, 64):
            runs[f"tally_{connections}"] = _load(port, list(API_PATHS.values()), connections)
    # Cold reads, with the response cache off: every read computed, as the first one after a
    # publish is when nothing warmed it (reported beside the ratio; issue 18's target >= 500 req/s).
    with _tally_server(b, port + 2, {"TALLY_API_RESPONSE_CACHE_MB": "0"}):
        runs["tally_uncached_16"] = _load(port + 2, list(API_PATHS.values()), 16)
    return runs


def _p4_ratio(runs: dict[str, dict[str, Any]]) -> float:
    return min(runs[f"tally_{c}"]["rps"] / runs[f"hello_{c}"]["rps"] for c in (16, 64))


def p4_api_throughput(b: Bench) -> Figure:
    b.month  # noqa: B018 - publishes the data set
    port = 18500 + os.getpid() % 400
    rounds = [_p4_round(b, port) for _ in range(P4_ROUNDS)]
    errors = sum(r["errors"] for runs in rounds for r in runs.values())
    ratios = [_p4_ratio(runs) for runs in rounds]
    p99s = [runs["tally_16"]["p99_ms"] for runs in rounds]
    met = min(ratios) >= 0.5 and max(p99s) <= 10 and errors == 0
    headroom = min(min(ratios) / 0.5, 10 / max(p99s))

    def each(key: str, runs_key: str, fmt: str = ".0f") -> str:
        return ", ".join(f"{runs[runs_key][key]:{fmt}}" for runs in rounds)

    return Figure(
        "P4",
        "API: dashboard reads (168 hourly points; 30 daily active users) vs bare FastAPI hello world, "
        f"req/s, server and load generator on one core each, {P4_ROUNDS} rounds",
        f"{each('rps', 'tally_16')} / {each('rps', 'tally_64')} req/s (16/64 conn), "
        f"p99 {each('p99_ms', 'tally_16', '.1f')} ms at 16; "
        f"cold (response cache off) {each('rps', 'tally_uncached_16')} req/s, "
        f"p99 {each('p99_ms', 'tally_uncached_16')} ms at 16",
        f"{each('rps', 'hello_16')} / {each('rps', 'hello_64')} req/s",
        min(ratios),
        ">= 0.5x every round; p99 <= 10 ms at 16",
        met,
        headroom,
        {"rounds": rounds, "ratios": ratios, "paths": API_PATHS},
    )


def p5_on_request(b: Bench) -> Figure:
    data = b.month
    files = all_files(data, month_hours())
    con = peers.connect()
    sql = peers.daily_dashboard_sql(files)
    duck_rows: list[tuple] = []
    duck_seconds, duck_samples = median_time(lambda: duck_rows.extend(con.execute(sql).fetchall()))
    port = 18900 + os.getpid() % 90
    paths = [
        "/v1/metrics/active_users?grain=day&start=2026-10-01&end=2026-10-31",
        "/v1/metrics/revenue?grain=day&start=2026-10-01&end=2026-10-31",
    ]
    with _tally_server(b, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        bodies: list[bytes] = []

        def read_dashboard() -> None:
            bodies.clear()
            for path in paths:
                connection.request("GET", path)
                response = connection.getresponse()
                bodies.append(response.read())
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")

        read_dashboard()
        samples = [timed(read_dashboard) for _ in range(200)]
        connection.close()
    tally_seconds = statistics.median(samples)
    # The same numbers? Distinct counts are HLL estimates: within 3%.
    dau = [p["value"] for p in json.loads(bodies[0])["series"][0]["points"]]
    revenue = [p["value"] for p in json.loads(bodies[1])["series"][0]["points"]]
    exact = duck_rows[: len(dau)]
    dau_error = max(abs(v - row[1]) / row[1] for v, row in zip(dau, exact, strict=True))
    revenue_error = max(abs(v - row[2]) / row[2] for v, row in zip(revenue, exact, strict=True))
    if dau_error > 0.03 or revenue_error > 1e-6:
        raise RuntimeError(f"Tally and DuckDB disagree: DAU {dau_error:.2%}, revenue {revenue_error:.2e}")
    ratio = duck_seconds / tally_seconds
    met, headroom = at_least(ratio, 1000)
    return Figure(
        "P5",
        "30 days of daily active users and revenue: DuckDB on request over the raw events vs read from Tally "
        "(HTTP included)",
        f"{tally_seconds * 1000:.2f} ms",
        f"{duck_seconds:.2f} s",
        ratio,
        ">= 1000x faster",
        met,
        headroom,
        {
            "raw_files": len(files),
            "duckdb_samples_s": duck_samples,
            "tally_p99_ms": round(sorted(samples)[int(0.99 * len(samples))] * 1000, 3),
            "max_dau_difference": round(dau_error, 5),
            "max_revenue_difference": revenue_error,
        },
    )


def p6_publish(b: Bench) -> Figure:
    data = b.month
    hours = month_hours()[10 * 24 : 11 * 24]
    samples: list[float] = []
    for index, hour in enumerate(hours):
        layout = KeyLayout(f"{b.layout.prefix}-p6-{index}")
        samples.append(
            timed(
                lambda hour=hour, layout=layout: publish_hours(
                    b.client, layout, data, b.spec, [hour], PublishOptions(superseded_ttl=60)
                )
            )
        )
    layout = KeyLayout(f"{b.layout.prefix}-p6-0")
    memory = _memory_of(b.client, layout)
    build = read_hour_build(data, hours[0], b.spec)
    slice_values = sum(len(v) for v in build.values.values())
    for index in range(len(hours)):
        _delete_prefix(b.client, KeyLayout(f"{b.layout.prefix}-p6-{index}"))
    seconds = statistics.median(samples)
    ratio = seconds / 0.2
    met, headroom = at_most(seconds * 1000, 200)
    return Figure(
        "P6",
        "publishing one hour (all metrics and slices) to Redis",
        f"{seconds * 1000:.1f} ms",
        "200 ms budget",
        ratio,
        "<= 200 ms",
        met,
        headroom,
        {
            "samples_ms": [round(s * 1000, 1) for s in samples],
            "metric_slices": slice_values,
            "redis_bytes_for_the_hour": memory,
            "redis_bytes_per_slice_hour": round(memory / slice_values, 1),
        },
    )


def _delete_prefix(client: redis.Redis, layout: KeyLayout) -> None:
    keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])


# Merges whose figures are plain numbers (no sketch): P7 reports their bytes as "exact".
EXACT_MERGES = frozenset({Merge.SUM, Merge.MIN, Merge.MAX})

# P7 with the default tiers: a year of hours, the newest TALLY_HOUR_RETENTION_DAYS of them kept.
YEAR_DAYS, HOUR_TIER_DAYS = 365, 14
P7_BUDGET_MIB = 250


def p7_memory(b: Bench) -> Figure:
    """Redis for 90 days in today's layout (every hour kept), projected to a year, beside a year
    published with the default tiers (hours for 14 days, then day aggregates), in the same run."""
    data = b.month
    flat, tiered = KeyLayout(f"{b.layout.prefix}-p7"), KeyLayout(f"{b.layout.prefix}-p7-tiers")
    builds = [read_hour_build(data, hour, b.spec) for hour in month_hours()]
    print("  publishing 90 days, every hour kept (the 30-day builds, three times over) ...", flush=True)
    for copy in range(3):
        shifted = [dataclasses.replace(x, hour=x.hour + timedelta(days=30 * copy)) for x in builds]
        for day in range(DAYS):
            publish_builds(
                b.client, flat, shifted[day * 24 : day * 24 + 24], PublishOptions(superseded_ttl=60), spec=b.spec
            )
    redis_bytes = _memory_of(b.client, flat)
    flat_families = _bytes_by_family(b.client, flat, b.spec)
    print(f"  publishing {YEAR_DAYS} days with the default tiers ({HOUR_TIER_DAYS} days of hours) ...", flush=True)
    started = time.perf_counter()
    for day in range(YEAR_DAYS):
        copy, offset = divmod(day, DAYS)
        shift = timedelta(days=30 * copy)
        hours = [dataclasses.replace(x, hour=x.hour + shift) for x in builds[offset * 24 : offset * 24 + 24]]
        publish_builds(b.client, tiered, hours, PublishOptions(superseded_ttl=1), spec=b.spec)
        # As the hourly runs would: the day's last publish, then the tiers at that moment.
        enforce_tiers(
            b.client,
            tiered,
            b.spec,
            hour_retention_days=HOUR_TIER_DAYS,
            day_retention_days=0,
            superseded_ttl=1,
            now=hours[-1].hour + ONE_HOUR,
        )
    tier_seconds = time.perf_counter() - started
    time.sleep(1.5)  # moved builds' keys expire after superseded_ttl=1
    tiered_bytes = _memory_of(b.client, tiered)
    tiered_families = _bytes_by_family(b.client, tiered, b.spec)
    same = _same_day_answers(b, flat, tiered)
    port = 18990 + os.getpid() % 9
    server = start_server(b.redis_url, flat.prefix, port)
    try:
        for path in [
            *API_PATHS.values(),
            "/v1/metrics/active_users?grain=day&start=2026-10-01&end=2026-12-30&window=30d",
        ]:
            for _ in range(50):
                _get(port, path)
        api_rss = _rss_bytes(server.pid)
    finally:
        stop(server)
    _delete_prefix(b.client, flat)
    _delete_prefix(b.client, tiered)
    per_day = redis_bytes / 90
    projected = per_day * YEAR_DAYS
    mib = tiered_bytes / 2**20
    # The budget was set (issue 15) for the exact and HLL metrics; the theta and KLL metrics the
    # default spec gained with issue 16 are reported beside it, as that issue asks.
    sketch_native = {family: tiered_families[family] / 2**20 for family in ("theta", "kll")}
    base_mib = mib - sum(sketch_native.values())
    met, headroom = at_most(base_mib, P7_BUDGET_MIB)
    return Figure(
        "P7",
        f"Redis for {YEAR_DAYS} days of the default spec with the default tiers, vs today's layout (projected)",
        f"{mib:.1f} MiB with tiers: {base_mib:.1f} exact and HLL metrics, "
        + ", ".join(f"{family} {size:.1f}" for family, size in sketch_native.items())
        + f"; API {api_rss / 2**20:.0f} MiB RSS",
        f"{projected / 2**20:.0f} MiB every hour kept (90 days measured x {YEAR_DAYS / 90:.2f})",
        base_mib,
        f"<= {P7_BUDGET_MIB} MiB for the exact and HLL metrics (ratio = their MiB); theta and KLL apart",
        met and same,
        headroom,
        {
            "redis_bytes_year_tiered": tiered_bytes,
            "redis_bytes_90_days_every_hour": redis_bytes,
            # Theta sketches are larger than HLL ones (issue 16): bytes per merge family.
            "redis_bytes_year_tiered_by_family": tiered_families,
            "redis_bytes_90_days_every_hour_by_family": flat_families,
            "redis_bytes_per_day_every_hour": round(per_day),
            "redis_mib_per_year_every_hour_projected": round(projected / 2**20, 1),
            "tiered_vs_every_hour": round(tiered_bytes / projected, 3),
            "hour_tier_days": HOUR_TIER_DAYS,
            "publish_and_tier_seconds_for_the_year": round(tier_seconds, 1),
            "day_answers_identical_over_the_90_days": same,
            "api_rss_bytes": api_rss,
            "events_per_hour": EVENTS_PER_HOUR,
        },
    )


def _same_day_answers(b: Bench, flat: KeyLayout, tiered: KeyLayout) -> bool:
    """The 90 days' day, week and month answers are the same from both layouts (through the real app)."""
    from fastapi.testclient import TestClient

    from dashboard_api import create_app
    from tally.core.settings import Settings

    paths = [
        "/v1/metrics/events?grain=day&start=2026-10-01&end=2026-12-30&group_by=platform",
        "/v1/metrics/active_users?grain=day&start=2026-10-01&end=2026-12-30",
        "/v1/metrics/active_users?grain=week&start=2026-10-05&end=2026-12-28",
        "/v1/metrics/purchasers?grain=month&start=2026-10-01&end=2026-12-01&group_by=country",
        "/v1/metrics/active_users?grain=day&start=2026-11-01&end=2026-12-30&window=30d",
    ]
    answers = []
    for layout in (flat, tiered):
        settings = Settings(redis_url=b.redis_url, redis_prefix=layout.prefix, hour_retention_days=0)
        with TestClient(create_app(settings)) as client:
            answers.append([client.get(path).json()["series"] for path in paths])
    return answers[0] == answers[1]


def _memory_of(client: redis.Redis, layout: KeyLayout) -> int:
    """Bytes of the prefix's keys that stay (keys left expiring after a switch are not counted)."""
    return sum(size for _, size in staying_keys(client, layout))


def _bytes_by_family(client: redis.Redis, layout: KeyLayout, spec: MetricSpec) -> dict[str, int]:
    """Bytes of the prefix's keys that stay, per sketch family of the metric owning them.

    ``hll``, ``theta``, ``kll`` (the metrics' ``merge``), ``exact`` for counts, sums, min
    and max, ``unowned`` for manifests and index hashes (no metric): they add up to
    :func:`_memory_of`.
    """
    families = {m.name: "exact" if m.merge in EXACT_MERGES else m.merge.value for m in spec.stored}
    found = dict.fromkeys(["hll", "theta", "kll", "exact", "unowned"], 0)
    for key, size in staying_keys(client, layout):
        info = layout.classify(key)
        if info is not None:
            found[families.get(info.metric or "", "unowned")] += size
    return found


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


MEASURES: dict[str, Callable[[Bench], Figure]] = {
    "P1": p1_spark_vs_duckdb,
    "P1B": p1b_spark_vs_duckdb_10m,
    "P2": p2_history,
    "P3": p3_backfill,
    "P4": p4_api_throughput,
    "P5": p5_on_request,
    "P6": p6_publish,
    "P7": p7_memory,
    "P7B": p7b_wide_spec,
    "P8": p8_hourly_run,
    "P9": p9_small_files,
    "P10": p10_sketch_latency,
    "P11": p11_sse_fanout,
}


def machine() -> dict[str, Any]:
    import duckdb
    import pyspark

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "duckdb": duckdb.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(figures: list[Figure]) -> None:
    print(f"\n{'id':<4}{'Tally':>44}{'peer':>28}{'ratio':>10}  {'target':<30}{'met'}")
    for f in figures:
        print(f"{f.id:<4}{f.tally:>44}{f.peer:>28}{f.ratio:>10.3g}  {f.target:<30}{'yes' if f.met else 'NO'}")


def _median_round(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """P4's round of median ratio (a results file from before the rounds holds one: ``runs``)."""
    if "rounds" not in detail:
        return detail["runs"]
    rounds = sorted(detail["rounds"], key=_p4_ratio)
    return rounds[len(rounds) // 2]


def write_chart(figures: list[Figure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    scored = [f for f in figures if f.id != "P7"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    colors = ["#2e7d32" if f.met else "#c62828" for f in scored]
    left.barh([f"{f.id} ({f.target})" for f in scored], [f.headroom for f in scored], color=colors)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_xscale("log")
    left.xaxis.set_major_locator(FixedLocator([0.1, 0.3, 1, 3, 10]))
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlim(0.1, 20)
    left.invert_yaxis()
    left.set_xlabel("headroom against the target (> 1: met; log scale)")
    left.set_title("Targets, each a ratio against a peer in the same run")
    for y, f in enumerate(scored):
        left.annotate(f"ratio {f.ratio:.3g}", (f.headroom, y), xytext=(4, 0), textcoords="offset points", va="center")
    api = next((f for f in figures if f.id == "P4"), None)
    if api is not None:
        runs = _median_round(api.detail)
        labels = ["16 connections", "64 connections"]
        hello = [runs["hello_16"]["rps"], runs["hello_64"]["rps"]]
        tally = [runs["tally_16"]["rps"], runs["tally_64"]["rps"]]
        x = range(len(labels))
        uncached = [runs["tally_uncached_16"]["rps"], 0] if "tally_uncached_16" in runs else [0, 0]
        right.bar([i - 0.27 for i in x], hello, width=0.27, label="bare FastAPI hello world", color="#9e9e9e")
        right.bar(list(x), tally, width=0.27, label="Tally dashboard reads", color="#1565c0")
        right.bar([i + 0.27 for i in x], uncached, width=0.27, label="Tally, response cache off", color="#90caf9")
        right.set_xticks(list(x), labels)
        right.set_ylabel("requests per second (server on one core)")
        right.set_title("P4: API throughput")
        for i, values in enumerate(zip(hello, tally, uncached, strict=True)):
            for offset, value in zip((-0.27, 0, 0.27), values, strict=True):
                if value:
                    right.annotate(f"{value:,.0f}", (i + offset, value), ha="center", va="bottom", fontsize=8)
        right.set_ylim(0, max(hello) * 1.35)
        right.legend(loc="upper center", ncols=2, fontsize=8)
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args == ["chart"]:  # redraw results/bench.png from results/bench.json
        saved = json.loads((RESULTS / "bench.json").read_text())["figures"]
        write_chart([Figure(**f) for f in saved], RESULTS / "bench.png")
        return 0
    wanted = [a.upper() for a in args] or list(MEASURES)
    unknown = [w for w in wanted if w not in MEASURES]
    if unknown:
        print(f"unknown measure(s) {unknown}; choose from {list(MEASURES)}", file=sys.stderr)
        return 2
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    RESULTS.mkdir(exist_ok=True)
    figures: list[Figure] = []
    with bench_redis("suite") as (url, client, layout):
        bench = Bench(client, url, layout)
        try:
            for name in wanted:
                print(f"{name}: {MEASURES[name].__name__} ...", flush=True)
                figure = MEASURES[name](bench)
                figures.append(figure)
                print(f"  {figure.tally} vs {figure.peer}: ratio {figure.ratio:.3g} ({figure.target})", flush=True)
            redis_version = client.info("server").get("redis_version")
        finally:
            bench.stop()
            shutil.rmtree(WORK, ignore_errors=True)
    print_table(figures)
    results = {
        "machine": {**machine(), "redis": redis_version},
        "spark_session_start_s": bench.spark_start_seconds,
        "figures": [dataclasses.asdict(f) for f in figures],
    }
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    write_chart(figures, RESULTS / "bench.png")
    print(f"wrote {RESULTS / 'bench.json'} and {RESULTS / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
