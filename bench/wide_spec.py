"""P7B: a wide spec (6 dimensions, one of 5,000 values) held within a Redis budget by `slices` and `max_values`.

Issue 15's Done-when: "a 6-dimension spec with one 5,000-value dimension stays within
its budget thanks to `slices` and `max_values`". One orders-like table, one spec in
two variants written to temporary YAML files:

- **naive**: every metric stores every combination of the 6 dimensions (64 sets) and
  ``merchant`` has a ``max_values`` it never reaches, so no value is ever folded;
- **bounded**: each metric declares four small ``slices`` (``merchant`` only in a set
  of its own) and ``merchant`` keeps the default ``max_values`` (1000 an hour).

The events are generated here (pyarrow, a fixed seed, Zipf-like merchants), computed
by the real Spark job and published to Redis under prefixes of their own. A year with
the default tiers (14 days of hours, 365 day aggregates) is extrapolated linearly from
what one day costs in each tier, measured by moving the day with
:func:`cache.tiers.enforce_tiers`. The bounded variant is published with the budget
(no refusal); the naive one with a budget its hours exceed, to show the refusal.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis
import yaml

from bench.server import staying_keys
from cache.builds import read_hour_build
from cache.keys import TIER_HOUR, KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from cache.tiers import enforce_tiers
from cache.verify import VerificationError
from tally.core.layout import ONE_HOUR, day_field, hour_folder
from tally.core.spec import MetricSpec, load_spec

if TYPE_CHECKING:
    from bench.suite import Bench, Figure

EVENTS_PER_HOUR = 10_000
DAY = datetime(2026, 11, 2, tzinfo=UTC)
BOUNDED_HOURS = 24  # one whole day: its day aggregate is the real one
# The naive variant's 64 grouping sets over a 5,000-value dimension: 2 hours are enough to
# show its cost (and all the shared 2-core machine has time for).
NAIVE_HOURS = 2
HOUR_TIER_DAYS, YEAR_DAYS = 14, 365
BUDGET_MIB = 250  # P7's
SEED = 15
SOURCE_PATH = "raw/orders/dt={YYYY}-{MM}-{DD}/hour={HH}"
# The dimensions: name -> (column, values). Merchants are Zipf-like; the rest uniform.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "region": tuple(f"r{i}" for i in range(8)),
    "channel": ("web", "app", "store", "phone"),
    "device": ("desktop", "mobile", "tablet"),
    "plan": ("free", "basic", "plus", "pro", "enterprise"),
    "locale": tuple(f"l{i:02d}" for i in range(30)),
}
MERCHANTS = 5_000
MERCHANT_ZIPF = 1.1  # the i-th merchant has rows in proportion to 1 / i**1.1
CUSTOMERS = 100_000
# Declared slices per metric: small sets, merchant alone. DEFAULT_SLICES keeps a merchant set on
# every metric at the default max_values (1000 an hour); BOUNDED_SLICES is what fits the budget:
# merchant's top 100 an hour for the count and the sum, and no merchant split of the distinct
# count, whose sketches cost most (docs/performance.md, P7B).
DEFAULT_SLICES: dict[str, list[list[str]]] = {
    "orders": [["region", "channel"], ["device"], ["plan", "locale"], ["merchant"]],
    "revenue": [["region", "channel"], ["device", "plan"], ["locale"], ["merchant"]],
    "customers": [["region"], ["channel", "device"], ["plan"], ["merchant"]],
}
BOUNDED_SLICES: dict[str, list[list[str]]] = {
    **DEFAULT_SLICES,
    "customers": [["region"], ["channel", "device"], ["plan"]],
}
BOUNDED_MERCHANT_MAX_VALUES = 100
DIMENSIONS = [*CATEGORIES, "merchant"]
NEVER_FOLDS = 1_000_000


def spec_document(slices: dict[str, list[list[str]]] | None, merchant_max_values: int | None) -> dict[str, Any]:
    """The wide spec: one orders source, a count, a sum and a distinct count over its 6 dimensions.

    ``slices`` None stores every combination; ``merchant_max_values`` None keeps the default.
    """
    merchant: dict[str, Any] = {"column": "merchant_id"}
    if merchant_max_values is not None:
        merchant["max_values"] = merchant_max_values
    metrics: list[dict[str, Any]] = [
        {"name": "orders", "description": "Orders.", "unit": "orders", "kind": "count"},
        {"name": "revenue", "description": "Sum of amount.", "unit": "currency", "kind": "sum", "field": "amount"},
        {
            "name": "customers",
            "description": "Distinct customers.",
            "unit": "users",
            "kind": "count_distinct",
            "field": "customer_id",
        },
    ]
    for metric in metrics:
        metric["dimensions"] = DIMENSIONS
        if slices is not None:
            metric["slices"] = slices[metric["name"]]
    return {
        "sources": {
            "orders": {
                "path": SOURCE_PATH,
                "time": "order_time",
                "id": "order_id",
                "columns": {
                    "order_id": "string",
                    "order_time": "timestamp",
                    "customer_id": "string",
                    "amount": "double",
                    **{name: "string" for name in CATEGORIES},
                    "merchant_id": "string",
                },
                "required": ["order_id", "customer_id"],
                "dimensions": {**{name: name for name in CATEGORIES}, "merchant": merchant},
            }
        },
        "metrics": metrics,
    }


def write_spec(path: Path, slices: dict[str, list[list[str]]] | None, merchant_max_values: int | None) -> MetricSpec:
    path.write_text(yaml.safe_dump(spec_document(slices, merchant_max_values), sort_keys=False))
    return load_spec(path)


def orders_table(hour: datetime, rows: int, seed: int) -> pa.Table:
    """One hour of orders; depends only on the seed and the hour."""
    rng = np.random.default_rng([seed, int(hour.timestamp())])
    weights = 1.0 / np.arange(1, MERCHANTS + 1) ** MERCHANT_ZIPF
    merchants = rng.choice(MERCHANTS, size=rows, p=weights / weights.sum())
    offsets = np.sort(rng.integers(0, 3_600_000_000, size=rows))  # microseconds into the hour
    columns: dict[str, pa.Array] = {
        "order_id": pa.array([f"{hour:%Y%m%d%H}-{i}" for i in range(rows)]),
        "order_time": pa.array(int(hour.timestamp() * 1_000_000) + offsets, pa.timestamp("us", tz="UTC")),
        "customer_id": pa.array([f"c{c}" for c in rng.integers(0, CUSTOMERS, size=rows)]),
        "amount": pa.array(np.round(rng.lognormal(3.5, 0.8, size=rows), 2)),
    }
    for name, values in CATEGORIES.items():
        columns[name] = pa.array(np.asarray(values)[rng.integers(0, len(values), size=rows)])
    columns["merchant_id"] = pa.array([f"m{m:04d}" for m in merchants])
    return pa.table(columns)


def generate_orders(data_dir: Path, hours: Sequence[datetime], rows: int = EVENTS_PER_HOUR) -> None:
    for hour in hours:
        folder = hour_folder(data_dir, SOURCE_PATH, hour)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(orders_table(hour, rows, SEED), folder / "part-0.parquet")


@dataclass(frozen=True)
class Variant:
    """One variant's spec, data and Redis prefix."""

    name: str
    spec: MetricSpec
    data: Path
    hours: list[datetime]
    layout: KeyLayout


def compute(b: Bench, variant: Variant) -> tuple[float, dict[str, int]]:
    """Run the Spark job over the variant's hours; its seconds and the merchant folds the run statistics report."""
    from jobs.hourly import run_hours

    started = time.perf_counter()
    report = run_hours(b.spark, variant.data, variant.spec, variant.hours)
    seconds = time.perf_counter() - started
    if not report.ok or len(report.computed_hours) != len(variant.hours):
        raise RuntimeError(f"{variant.name}: the job failed: {report.failed or report.missing}")
    folds = [fold for stats in report.computed.values() for fold in stats.get("folded_dimensions") or []]
    return seconds, {
        "hours_folded": len(folds),
        "rows_folded": sum(int(f["rows_folded"]) for f in folds),
        "max_distinct_values_an_hour": max((int(f["distinct_values"]) for f in folds), default=0),
    }


def tier_bytes(client: redis.Redis, layout: KeyLayout) -> dict[str, int]:
    """Bytes per tier of the prefix's keys that stay (MEMORY USAGE exact; keys left expiring not counted)."""
    found: dict[str, int] = {}
    for key, size in staying_keys(client, layout):
        info = layout.classify(key)
        if info is not None:
            found[info.tier] = found.get(info.tier, 0) + size
    found["total"] = sum(found.values())
    return found


def day_slices(client: redis.Redis, variant: Variant) -> dict[str, int]:
    """Slices per metric of the day aggregate (its values hash)."""
    day = day_field(DAY.date())
    return {m.name: int(client.hlen(variant.layout.day_values(day, m.name))) for m in variant.spec.stored}


def measure_day(client: redis.Redis, variant: Variant) -> dict[str, Any]:
    """What the published day costs in the hour tier, then (moved by enforce_tiers) in the day tier."""
    in_hours = tier_bytes(client, variant.layout)
    day_slice_counts = day_slices(client, variant)
    enforce_tiers(
        client,
        variant.layout,
        variant.spec,
        hour_retention_days=HOUR_TIER_DAYS,
        day_retention_days=0,
        superseded_ttl=1,
        now=DAY + timedelta(days=HOUR_TIER_DAYS + 1),
    )
    time.sleep(1.5)  # the moved builds' keys expire after superseded_ttl=1
    in_days = tier_bytes(client, variant.layout)
    if in_days.get(TIER_HOUR):
        raise RuntimeError(f"{variant.name}: the day did not leave the hour tier: {in_days}")
    # A day in the hour tier costs its hours (the bytes that leave when it moves) besides what stays.
    per_hour = (in_hours["total"] - in_days["total"]) / len(variant.hours)
    return {
        "bytes_with_hours": in_hours,
        "bytes_after_move": in_days,
        "bytes_per_hour": round(per_hour),
        "bytes_per_day_aggregate": in_days["total"],
        "day_aggregate_slices": day_slice_counts,
        "year_bytes": HOUR_TIER_DAYS * 24 * per_hour + YEAR_DAYS * in_days["total"],
    }


def hour_slices(variant: Variant) -> dict[str, int]:
    build = read_hour_build(variant.data, variant.hours[0], variant.spec)
    return {metric: len(values) for metric, values in sorted(build.values.items())}


def publish_under_budget(client: redis.Redis, variant: Variant, budget: int) -> str | None:
    """Publish the variant's hours with ``budget``; the refusal's message (None: published)."""
    options = PublishOptions(superseded_ttl=1, redis_budget_bytes=budget)
    try:
        publish_hours(client, variant.layout, variant.data, variant.spec, variant.hours, options)
    except VerificationError as exc:
        return str(exc)
    return None


def _delete_prefix(client: redis.Redis, layout: KeyLayout) -> None:
    keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])


def p7b_wide_spec(b: Bench) -> Figure:
    """Both variants computed, published and projected to a year with the default tiers."""
    from bench.suite import Figure, at_most

    # A folder of its own, not the suite's WORK: other benchmarks (and tests) clear that one.
    work = Path(tempfile.mkdtemp(prefix="tally-p7b-"))
    hours = [DAY + i * ONE_HOUR for i in range(BOUNDED_HOURS)]
    budget = BUDGET_MIB * 2**20
    variants = {
        "naive": Variant(
            "naive",
            write_spec(work / "naive.yaml", None, NEVER_FOLDS),
            work / "naive",
            hours[:NAIVE_HOURS],
            KeyLayout(f"{b.layout.prefix}-p7b-naive"),
        ),
        "default_max_values": Variant(
            "default_max_values",
            write_spec(work / "default.yaml", DEFAULT_SLICES, None),
            work / "default",
            hours,
            KeyLayout(f"{b.layout.prefix}-p7b-default"),
        ),
        "bounded": Variant(
            "bounded",
            write_spec(work / "bounded.yaml", BOUNDED_SLICES, BOUNDED_MERCHANT_MAX_VALUES),
            work / "bounded",
            hours,
            KeyLayout(f"{b.layout.prefix}-p7b-bounded"),
        ),
    }
    try:
        print(f"  generating {BOUNDED_HOURS} hours x {EVENTS_PER_HOUR:,} orders (6 dimensions) ...", flush=True)
        for variant in variants.values():
            generate_orders(variant.data, variant.hours)
        seconds: dict[str, dict[str, float]] = {}
        results: dict[str, dict[str, Any]] = {}
        # The naive hours take a budget scaled to them: what 2 of the 14 days' 336 hours may use.
        naive_budget = budget * NAIVE_HOURS // (HOUR_TIER_DAYS * 24)
        for name, variant in variants.items():
            print(f"  {name}: the Spark job over {len(variant.hours)} hours, then publishing ...", flush=True)
            job_seconds, folds = compute(b, variant)
            refused_at = naive_budget if name == "naive" else budget
            started = time.perf_counter()
            message = publish_under_budget(b.client, variant, refused_at)
            publish_seconds = time.perf_counter() - started
            left_after_refusal = None
            if message is not None:  # nothing was switched: publish again without a budget, to measure it
                left_after_refusal = tier_bytes(b.client, variant.layout)
                started = time.perf_counter()
                publish_hours(b.client, variant.layout, variant.data, variant.spec, variant.hours, PublishOptions(1))
                publish_seconds = time.perf_counter() - started
            seconds[name] = {
                "job": round(job_seconds, 1),
                "publish": round(publish_seconds, 1),
            }
            results[name] = {
                "hours_measured": len(variant.hours),
                "slices_per_hour": hour_slices(variant),
                "folded_merchant": folds,
                "budget_bytes_tried": refused_at,
                "refused": message,
                "bytes_left_after_refusal": left_after_refusal,
                **measure_day(b.client, variant),
            }
            _delete_prefix(b.client, variant.layout)
    finally:
        for variant in variants.values():
            _delete_prefix(b.client, variant.layout)
        shutil.rmtree(work, ignore_errors=True)
    bounded, naive = results["bounded"], results["naive"]
    bounded_mib = bounded["year_bytes"] / 2**20
    naive_mib = naive["year_bytes"] / 2**20
    # The naive day aggregate was measured over 2 hours: scaled to 24 it would be about 12x.
    naive_scaled = (
        HOUR_TIER_DAYS * 24 * naive["bytes_per_hour"]
        + YEAR_DAYS * naive["bytes_per_day_aggregate"] * BOUNDED_HOURS / NAIVE_HOURS
    ) / 2**20
    met, headroom = at_most(bounded_mib, BUDGET_MIB)
    met = met and bounded["refused"] is None and naive["refused"] is not None
    return Figure(
        "P7B",
        "Redis for a year of a 6-dimension spec with a 5,000-value dimension (default tiers), "
        "declared slices and max_values vs every combination, nothing folded",
        f"{bounded_mib:.1f} MiB bounded ({results['default_max_values']['year_bytes'] / 2**20:.0f} MiB with "
        "merchant's default max_values on every metric)",
        f">= {naive_mib:,.0f} MiB naive",
        bounded_mib,
        f"<= {BUDGET_MIB} MiB (ratio = bounded MiB a year)",
        met,
        headroom,
        {
            "projection": (
                f"linear, from one measured day: {HOUR_TIER_DAYS} x 24 x bytes_per_hour (the bytes that leave "
                f"Redis when enforce_tiers moves the day) + {YEAR_DAYS} x bytes_per_day_aggregate (what stays); "
                f"bounded measured over {BOUNDED_HOURS} hours, naive over {NAIVE_HOURS} (its day aggregate is "
                "of 2 hours, so its projection is a lower bound)"
            ),
            "bounded_mib_per_year": round(bounded_mib, 1),
            "naive_mib_per_year_lower_bound": round(naive_mib, 1),
            "naive_mib_per_year_day_aggregate_scaled_to_24_hours": round(naive_scaled, 1),
            "budget_mib": BUDGET_MIB,
            "events_per_hour": EVENTS_PER_HOUR,
            "dimensions": {**{k: len(v) for k, v in CATEGORIES.items()}, "merchant": MERCHANTS},
            "bounded_slices": BOUNDED_SLICES,
            "bounded_merchant_max_values": BOUNDED_MERCHANT_MAX_VALUES,
            "default_slices": DEFAULT_SLICES,
            "default_max_values_mib_per_year": round(results["default_max_values"]["year_bytes"] / 2**20, 1),
            "default_max_values": results["default_max_values"],
            "bounded": bounded,
            "naive": naive,
            "seconds": seconds,
        },
    )
