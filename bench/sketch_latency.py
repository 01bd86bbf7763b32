"""Latency of issue 16's sketch reads: a weekly retention table, a daily funnel, a p95 series.

Publishes 100 days of realistic hourly builds of the default spec's sketch metrics
into Redis under a private prefix, the way the job stores them:

- ``new_users``, ``returning_users``, ``viewers``, ``carters``, ``buyers``: compact
  theta sketches (``lg_nom_entries`` from the spec) of every slice the spec stores
  for them; values = estimates;
- ``order_value_p95``: KLL doubles sketches (``kll_k`` from the spec) of purchase
  amounts, every slice the spec stores; values = the sketch's n;
- ``events``: exact counts over every combination of [event_type, country, platform],
  the peer a count metric's series is.

The traffic: 60,000 known users, about 2,000 active an hour (3% of them signups with
new ids, who come back less and less over the following weeks), funnel steps nested
(viewers > carters > buyers, mostly subsets), about 200 purchases an hour with
lognormal amounts. Every hour is published with :func:`cache.publish.publish_builds`
a day at a time, so the day aggregates are built as in production.

Then ``tally serve`` runs in its own process with its response cache off (every
request computes its answer: the first read after a publish) and this process times
requests one at a time, p50 and p99:

- retention: 13 weekly cohorts x 12 periods (new_users -> returning_users)   target p99 <= 50 ms
- funnel:    viewers -> carters -> buyers, 30 daily buckets                  target p99 <= 50 ms
- p95:       /v1/metrics/order_value_p95, 30 daily points, q=0.95            target p99 <= 20 ms
- peers:     /health (the server's fixed cost) and the same 30 days of events (a count series)

``python -m bench.sketch_latency`` prints them and writes results/sketch_latency.json;
``python -m bench.suite P10`` reports them as figure P10.
"""

from __future__ import annotations

import bisect
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasketches
import httpx
import redis

from bench.server import bench_redis, start_server, stop, write_results
from cache.builds import HourBuild, build_id
from cache.keys import KeyLayout, slice_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import Metric, MetricSpec, load_spec

if TYPE_CHECKING:
    from bench.suite import Bench, Figure

COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "NL"]
PLATFORMS = ["web", "ios", "android"]
POPULATION, ACTIVE_PER_HOUR = 60_000, 2_000
SIGNUP_SHARE = 0.03  # of an hour's active users, with new ids
# An hour's active users also include this many signups of the last 4 weeks, and of before:
# the retention table's decay.
RECENT_SIGNUPS_BACK, OLDER_SIGNUPS_BACK, RECENT_HOURS = 150, 40, 28 * 24
VIEW_SHARE = 0.7  # of the active users
CART_SHARE, CART_STRAYS = 0.2, 0.02  # of the viewers; of the other active users (carts without a view)
BUYERS_PER_HOUR, BUYER_STRAYS = 170, 0.1  # distinct buyers; the share of them who did not cart
PURCHASES_PER_HOUR = 200
AMOUNT_MU, AMOUNT_SIGMA = 3.5, 0.8  # lognormal order values: median about 33
THETA_METRICS = ("new_users", "returning_users", "viewers", "carters", "buyers")
QUANTILE_METRIC, COUNT_METRIC = "order_value_p95", "events"

DAYS = 100
END = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday: the retention table's end
RETENTION_WEEKS, RETENTION_PERIODS, SERIES_DAYS = 13, 12, 30
REQUESTS = 200
CPU_REQUESTS = 50  # per case, after the timed rounds: the server's CPU time per answer
TARGETS_MS = {"retention_13x12": 50.0, "funnel_3_steps_30_days": 50.0, "p95_30_days": 20.0}


def user_name(user: int) -> str:
    return f"u{user}"


def user_cell(user: int) -> tuple[str, str]:
    """A user's (country, platform): fixed per user, so every metric slices them alike."""
    return COUNTRIES[user % len(COUNTRIES)], PLATFORMS[user % len(PLATFORMS)]


@dataclass
class Traffic:
    """The users behind the hours: who signed up when, so signups come back in later hours."""

    rng: random.Random
    next_id: int = POPULATION
    signups: list[int] = field(default_factory=list)  # users, in the order they signed up
    signup_hours: list[int] = field(default_factory=list)  # the hour index of each
    hour_index: int = 0

    def returning_signups(self) -> list[int]:
        cut = bisect.bisect_left(self.signup_hours, self.hour_index - RECENT_HOURS)
        recent = range(cut, len(self.signups))
        picked = self.rng.sample(recent, min(RECENT_SIGNUPS_BACK, len(recent)))
        picked += self.rng.sample(range(cut), min(OLDER_SIGNUPS_BACK, cut))
        return [self.signups[i] for i in picked]

    def hour(self) -> dict[str, list[int]]:
        """One hour's users per step: active, new (signups), viewers, carters, buyers."""
        back = self.returning_signups()
        new = list(range(self.next_id, self.next_id + round(ACTIVE_PER_HOUR * SIGNUP_SHARE)))
        self.next_id += len(new)
        known = self.rng.sample(range(POPULATION), ACTIVE_PER_HOUR - len(back) - len(new))
        active = list(dict.fromkeys([*known, *back, *new]))
        viewers = [u for u in active if self.rng.random() < VIEW_SHARE]
        viewed = set(viewers)
        carters = [u for u in active if self.rng.random() < (CART_SHARE if u in viewed else CART_STRAYS)]
        strays = round(BUYERS_PER_HOUR * BUYER_STRAYS)
        buyers = self.rng.sample(carters, min(len(carters), BUYERS_PER_HOUR - strays))
        carted = set(carters)
        buyers += self.rng.sample([u for u in active if u not in carted], strays)
        self.signups += new
        self.signup_hours += [self.hour_index] * len(new)
        self.hour_index += 1
        return {"returning_users": active, "new_users": new, "viewers": viewers, "carters": carters, "buyers": buyers}


def stored_slices(metric: Metric, labels: Mapping[str, str]) -> list[str]:
    """The slice ids the spec stores for ``metric`` that a row with ``labels`` falls in (the total included)."""
    return [slice_id({d: labels[d] for d in dims}) for dims in metric.slice_dimension_sets()]


def theta_sketches(users: Iterable[int], metric: Metric) -> dict[str, datasketches.update_theta_sketch]:
    """Slice -> theta sketch of ``users``, for every slice the spec stores for ``metric``."""
    sketches: dict[str, datasketches.update_theta_sketch] = {}
    for user in users:
        name, (country, platform) = user_name(user), user_cell(user)
        for key in stored_slices(metric, {"country": country, "platform": platform}):
            if key not in sketches:
                sketches[key] = datasketches.update_theta_sketch(metric.lg_nom_entries)
            sketches[key].update(name)
    return sketches


def every_combination(labels: Mapping[str, str]) -> list[str]:
    """The slice ids of every subset of ``labels`` (the total included)."""
    dims = sorted(labels)
    return [
        slice_id({d: labels[d] for d in combo}) for size in range(len(dims) + 1) for combo in combinations(dims, size)
    ]


def quantile_sketches(
    purchases: Iterable[tuple[int, float]], metric: Metric
) -> dict[str, datasketches.kll_doubles_sketch]:
    """Slice -> KLL sketch of the purchase amounts, for every slice the spec stores for ``metric``."""
    sketches: dict[str, datasketches.kll_doubles_sketch] = {}
    for user, amount in purchases:
        country, platform = user_cell(user)
        for key in stored_slices(metric, {"country": country, "platform": platform}):
            if key not in sketches:
                sketches[key] = datasketches.kll_doubles_sketch(metric.kll_k)
            sketches[key].update(amount)
    return sketches


def event_counts(steps: Mapping[str, list[int]], purchases: list[tuple[int, float]], rng: random.Random) -> Counter:
    """Slice -> events, for every combination of [event_type, country, platform]."""
    cells: Counter = Counter()  # (event_type, country, platform) -> events, rolled up below
    viewed = set(steps["viewers"])
    for user in steps["returning_users"]:
        kind = "page_view" if user in viewed else "click"
        cells[(kind, *user_cell(user))] += rng.randint(1, 6) if kind == "page_view" else 1
    for kind, step in (("signup", "new_users"), ("add_to_cart", "carters")):
        for user in steps[step]:
            cells[(kind, *user_cell(user))] += 1
    for user, _ in purchases:
        cells[("purchase", *user_cell(user))] += 1
    counts: Counter = Counter()
    for (kind, country, platform), n in cells.items():
        for key in every_combination({"event_type": kind, "country": country, "platform": platform}):
            counts[key] += n
    return counts


def hour_build(hour: datetime, traffic: Traffic, spec: MetricSpec) -> HourBuild:
    """The next hour of ``traffic`` as the job would store it."""
    return build_of(hour, traffic.hour(), traffic.rng, spec)


def build_of(hour: datetime, steps: Mapping[str, list[int]], rng: random.Random, spec: MetricSpec) -> HourBuild:
    """One hour's build of the sketch metrics (and events) from its users per step."""
    buyers = steps["buyers"]  # each buys once, some again: PURCHASES_PER_HOUR in all
    shoppers = [*buyers, *(rng.choice(buyers) for _ in range(PURCHASES_PER_HOUR - len(buyers)))]
    purchases = [(user, round(rng.lognormvariate(AMOUNT_MU, AMOUNT_SIGMA), 2)) for user in shoppers]
    values: dict[str, dict[str, float]] = {}
    blobs: dict[str, dict[str, bytes]] = {}
    for name in THETA_METRICS:
        compact = {key: s.compact() for key, s in theta_sketches(steps[name], spec_metric(spec, name)).items()}
        values[name] = {key: float(round(s.get_estimate())) for key, s in compact.items()}
        blobs[name] = {key: bytes(s.serialize()) for key, s in compact.items()}
    kll = quantile_sketches(purchases, spec_metric(spec, QUANTILE_METRIC))
    values[QUANTILE_METRIC] = {key: float(s.n) for key, s in kll.items()}
    blobs[QUANTILE_METRIC] = {key: bytes(s.serialize()) for key, s in kll.items()}
    values[COUNT_METRIC] = {key: float(n) for key, n in event_counts(steps, purchases, rng).items()}
    return HourBuild(hour, build_id(values, blobs), values, blobs, {})


def spec_metric(spec: MetricSpec, name: str) -> Metric:
    metric = spec.get(name)
    if metric is None:
        raise LookupError(f"the spec has no metric {name!r}")
    return metric


def publish_days(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, days: int, end: datetime) -> None:
    """``days`` days of hourly builds ending at ``end``, a day per publish (day aggregates as in production)."""
    traffic = Traffic(random.Random(16))
    day = end - timedelta(days=days)
    while day < end:
        builds = [hour_build(day + timedelta(hours=h), traffic, spec) for h in range(24)]
        publish_builds(client, layout, builds, PublishOptions(superseded_ttl=60), spec=spec)
        day += timedelta(days=1)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def time_interleaved(client: httpx.Client, paths: Mapping[str, str], rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each request, one at a time, the cases taking turns.

    Taking turns spreads whatever else the (shared) machine is doing evenly over the
    cases, so their ratios compare like with like.
    """
    for path in paths.values():
        client.get(path).raise_for_status()  # warm up
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            started = time.perf_counter()
            response = client.get(path)
            samples[name].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return samples


def server_cpu_ms(client: httpx.Client, pid: int, path: str, count: int) -> float:
    """The server process's CPU time (user + system) per request: what the answer costs, waits excluded."""
    before = _cpu_seconds(pid)
    for _ in range(count):
        client.get(path).raise_for_status()
    return (_cpu_seconds(pid) - before) / count * 1000


def _cpu_seconds(pid: int) -> float:
    # /proc/<pid>/stat: utime and stime are fields 14 and 15, after the parenthesised command name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_paths(end: datetime) -> dict[str, str]:
    """The timed requests: the three targets, then the peers."""
    cohorts_from = (end - timedelta(weeks=RETENTION_WEEKS)).date()
    first = (end - timedelta(days=SERIES_DAYS)).date()
    last = end.date()
    return {
        "retention_13x12": (
            f"/v1/retention?cohort=new_users&returning=returning_users&grain=week"
            f"&start={cohorts_from}&end={last}&periods={RETENTION_PERIODS}"
        ),
        "funnel_3_steps_30_days": f"/v1/funnel?steps=viewers,carters,buyers&grain=day&start={first}&end={last}",
        "p95_30_days": f"/v1/metrics/{QUANTILE_METRIC}?grain=day&start={first}&end={last}&q=0.95",
        "events_30_days": f"/v1/metrics/{COUNT_METRIC}?grain=day&start={first}&end={last}",
        "health": "/health",
    }


def check_answers(http: httpx.Client, paths: Mapping[str, str]) -> dict[str, Any]:
    """What the timed answers hold (so a fast empty answer cannot pass): cohorts, buckets, points."""
    retention = http.get(paths["retention_13x12"]).json()
    funnel = http.get(paths["funnel_3_steps_30_days"]).json()
    p95 = http.get(paths["p95_30_days"]).json()
    cells = [p for c in retention["cohorts"] for p in c["periods"]]
    found = {
        "retention_cohorts": len(retention["cohorts"]),
        "retention_cells": len(cells),
        "retention_cells_with_value": sum(p["value"] is not None for p in cells),
        "retention_first_cohort_size": retention["cohorts"][0]["size"],
        "retention_first_cohort_week_1_rate": retention["cohorts"][0]["periods"][1]["rate"],
        "funnel_buckets": len(funnel["buckets"]),
        "funnel_first_bucket": [s["value"] for s in funnel["buckets"][0]["steps"]],
        "p95_points": len(p95["series"][0]["points"]),
        "p95_first_point": p95["series"][0]["points"][0]["value"],
    }
    expected = (RETENTION_WEEKS, RETENTION_WEEKS * (RETENTION_PERIODS + 1), SERIES_DAYS, SERIES_DAYS)
    got = (found["retention_cohorts"], found["retention_cells"], found["funnel_buckets"], found["p95_points"])
    if got != expected or found["p95_first_point"] is None:
        raise RuntimeError(f"unexpected answers: {found}")
    return found


def measure(client: redis.Redis, redis_url: str, layout: KeyLayout) -> dict[str, Any]:
    """Publish, serve, time: p50/p99 per request, the targets, and ratios against the peers."""
    spec = load_spec(DEFAULT_SPEC_PATH)
    print(f"publishing {DAYS * 24} hours ({DAYS} days) of sketch builds ...", flush=True)
    started = time.perf_counter()
    publish_days(client, layout, spec, DAYS, END)
    publish_seconds = time.perf_counter() - started
    port = 18000 + (os.getpid() + 500) % 1000
    # The response cache off: this measures computing the answer, not replaying it.
    server = start_server(redis_url, layout.prefix, port, {"TALLY_API_RESPONSE_CACHE_MB": "0"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            paths = request_paths(END)
            answers = check_answers(http, paths)
            load_before = os.getloadavg()[0]
            samples = time_interleaved(http, paths, REQUESTS)
            results: dict[str, Any] = {
                name: {
                    "path": path,
                    "p50_ms": round(statistics.median(samples[name]), 2),
                    "p99_ms": round(percentile(samples[name], 99), 2),
                    "requests": len(samples[name]),
                    "server_cpu_ms_per_request": round(server_cpu_ms(http, server.pid, path, CPU_REQUESTS), 2),
                }
                for name, path in paths.items()
            }
            # The machine's 1-minute load while timing: on a shared machine, p99 follows it.
            results["load_average"] = {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()}
    finally:
        stop(server)
    for name, target in TARGETS_MS.items():
        results[name]["target_p99_ms"] = target
        results[name]["p99_vs_target"] = round(results[name]["p99_ms"] / target, 3)
        results[name]["target_met"] = results[name]["p99_ms"] <= target
        results[name]["p99_vs_events_series"] = round(results[name]["p99_ms"] / results["events_30_days"]["p99_ms"], 2)
    results["answers"] = answers
    results["publish_seconds"] = round(publish_seconds, 1)
    results["data"] = {
        "days": DAYS,
        "end": END.isoformat(),
        "population": POPULATION,
        "active_per_hour": ACTIVE_PER_HOUR,
        "purchases_per_hour": PURCHASES_PER_HOUR,
    }
    return results


def print_results(results: Mapping[str, Any]) -> None:
    print(f"{'case':<26}{'p50 ms':>10}{'p99 ms':>10}{'cpu ms':>10}{'target':>10}")
    for name in request_paths(END):
        row = results[name]
        target = f"{row['target_p99_ms']:g}" if "target_p99_ms" in row else "-"
        cpu = row["server_cpu_ms_per_request"]
        print(f"{name:<26}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}{cpu:>10.1f}{target:>10}")
    load = results["load_average"]
    print(f"load average {load['before']:.1f} -> {load['after']:.1f} on {load['cores']} cores")


def p10_sketch_latency(b: Bench) -> Figure:
    """P10: the three sketch reads' p99 against their targets; the worst ratio is the figure's."""
    from bench.suite import Figure, at_most

    layout = KeyLayout(f"{b.layout.prefix}-p10")
    try:
        results = measure(b.client, b.redis_url, layout)
    finally:
        keys = list(b.client.scan_iter(match=layout.all_keys_pattern(), count=5000))
        for i in range(0, len(keys), 5000):
            b.client.delete(*keys[i : i + 5000])
    write_results("sketch_latency", results)
    worst = max(TARGETS_MS, key=lambda name: results[name]["p99_vs_target"])
    ratio = results[worst]["p99_vs_target"]
    met, headroom = at_most(ratio, 1.0)
    tally = ", ".join(f"{name.split('_')[0]} p99 {results[name]['p99_ms']:.1f} ms" for name in TARGETS_MS)
    return Figure(
        "P10",
        "Uncached p99 of a 13x12 weekly retention table, a 3-step 30-day funnel and a 30-day p95 series "
        "(100 days of theta and KLL builds), against their targets",
        tally,
        f"30-day events series p99 {results['events_30_days']['p99_ms']:.1f} ms; "
        f"/health {results['health']['p99_ms']:.1f} ms",
        ratio,
        "p99 / target <= 1 (50, 50, 20 ms; worst of the three)",
        met,
        headroom,
        {"worst": worst, **results},
    )


def main() -> int:
    with bench_redis("sketch") as (url, client, layout):
        results = measure(client, url, layout)
    print_results(results)
    for name in TARGETS_MS:
        row = results[name]
        verdict = "met" if row["target_met"] else "NOT met"
        print(f"{name}: p99 {row['p99_ms']:.1f} ms, target {row['target_p99_ms']:g}: {verdict}")
    write_results("sketch_latency", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
