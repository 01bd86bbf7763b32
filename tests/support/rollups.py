"""Durable rollups written with pyarrow, laid out as the job writes them, for tests and benches without Spark.

The rows are aggregated here from a few synthetic events under the spec's stored
metrics (every slice set; real HLL, theta and KLL sketches), so publishing them passes
the publisher's checks; the files sit where the job's dynamic partition overwrite puts them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasketches
import pyarrow as pa
import pyarrow.parquet as pq

from tally.core.layout import rollup_hour_dir, stats_hour_dir
from tally.core.rollup import METRIC, SKETCH, VALUE
from tally.core.spec import MetricSpec
from tally.core.spec_model import Kind, Metric

PART = "part-00000-c000.snappy.parquet"  # the name Spark gives a partition's file


def synthetic_events(seed: int, count: int) -> list[dict[str, Any]]:
    """Events of the sample table's shape (only the columns the default metrics read)."""
    rng = random.Random(seed)
    return [
        {
            "event_type": rng.choice(["page_view", "add_to_cart", "purchase", "signup"]),
            "country": rng.choice(["US", "DE", "FR", "BR"]),
            "platform": rng.choice(["web", "ios", "android"]),
            "user_id": f"u{rng.randrange(40)}",
            "session_id": f"s{rng.randrange(80)}",
            "amount": round(rng.uniform(1, 90), 2),
        }
        for _ in range(count)
    ]


def rollup_table(spec: MetricSpec, events: Sequence[dict[str, Any]]) -> pa.Table:
    """The rollup rows of ``events`` for every stored metric and slice set, as the job's schema types them."""
    rows: list[dict[str, Any]] = []
    for metric in spec.stored:
        matching = [e for e in events if all(e.get(column) in values for column, values in metric.filter)]
        for dims in metric.slice_dimension_sets():
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for event in matching:
                groups.setdefault(tuple(event[d] for d in dims), []).append(event)
            for labels, members in sorted(groups.items()):
                value, sketch = _aggregate(metric, members, spec.sketch_lg_k)
                row = {METRIC: metric.name, **dict.fromkeys(spec.dimensions), **dict(zip(dims, labels, strict=True))}
                rows.append({**row, VALUE: value, SKETCH: sketch})
    dimensions = [(d, pa.string()) for d in spec.dimensions]
    schema = pa.schema([(METRIC, pa.string()), *dimensions, (VALUE, pa.float64()), (SKETCH, pa.binary())])
    return pa.Table.from_pylist(rows, schema=schema)


def _aggregate(metric: Metric, members: list[dict[str, Any]], lg_k: int) -> tuple[float, bytes | None]:
    field = str(metric.field)
    if metric.kind == Kind.COUNT:
        return float(len(members)), None
    if metric.kind == Kind.SUM:
        return float(sum(m[field] for m in members)), None
    if metric.kind in (Kind.MIN, Kind.MAX):
        extreme = min if metric.kind == Kind.MIN else max
        return float(extreme(m[field] for m in members)), None
    if metric.kind == Kind.QUANTILE:
        kll = datasketches.kll_doubles_sketch(metric.kll_k)
        for member in members:
            kll.update(float(member[field]))
        return float(kll.n), kll.serialize()
    if metric.is_theta:
        theta = datasketches.update_theta_sketch(metric.lg_nom_entries)
        for member in members:
            theta.update(str(member[field]))
        return float(theta.get_estimate()), theta.compact().serialize()
    sketch = datasketches.hll_sketch(lg_k)
    for member in members:
        sketch.update(str(member[field]))
    return float(sketch.get_estimate()), sketch.serialize_compact()


def stats_table(spec: MetricSpec, events: int, fingerprint: str, computed_at: datetime) -> pa.Table:
    """One source's statistics row of an hour, with the stored types of ``rollups/stats``."""
    row = {
        "rows_read": events,
        "valid_rows": events,
        "invalid_rows": 0,
        "duplicate_rows": 0,
        "counted_events": events,
        "invalid_by_reason": [],
        "computed_at": computed_at,
        "source": "events",
        "input_fingerprint": fingerprint,
        "metric_fingerprints": sorted(spec.fingerprints.items()),
        "application_seconds": 1.5,
        "application_hours": 1,
    }
    schema = pa.schema(
        [
            *((name, pa.int64()) for name in ("rows_read", "valid_rows", "invalid_rows", "duplicate_rows")),
            ("counted_events", pa.int64()),
            ("invalid_by_reason", pa.map_(pa.string(), pa.int64())),
            ("computed_at", pa.timestamp("us", tz="UTC")),
            ("source", pa.string()),
            ("input_fingerprint", pa.string()),
            ("metric_fingerprints", pa.map_(pa.string(), pa.string())),
            ("application_seconds", pa.float64()),
            ("application_hours", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([row], schema=schema)


def write_hour(data_dir: Path, hour: datetime, rollup: pa.Table, stats: pa.Table) -> None:
    """Write an hour's partitions as the job does: the rollup, then the statistics (which mark it complete)."""
    for folder, table in ((rollup_hour_dir(data_dir, hour), rollup), (stats_hour_dir(data_dir, hour), stats)):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():  # dynamic partition overwrite: the hour's folder is replaced
            old.unlink()
        pq.write_table(table, folder / PART)


def write_synthetic_hour(data_dir: Path, hour: datetime, spec: MetricSpec, *, seed: int, events: int = 60) -> None:
    """An hour of rollups of ``events`` synthetic events (distinct per seed), with its statistics."""
    rollup = rollup_table(spec, synthetic_events(seed, events))
    stats = stats_table(spec, events, f"fp{seed:014d}", datetime(2026, 1, 1, tzinfo=UTC))
    write_hour(data_dir, hour, rollup, stats)
