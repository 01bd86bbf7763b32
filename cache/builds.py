"""A *build*: one published state of one hour, its identity and its keys in Redis.

A build id is a content hash (:func:`build_id`), so republishing unchanged data
yields the same id and the same keys. A build's keys are written first with a
TTL (:func:`write_build_keys`) and become visible only when a switch points the
hour at it and persists them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from cache.keys import ANY_METRIC, UNRECORDED, KeyLayout, slice_id
from tally.core.layout import format_hour, hour_field
from tally.core.rollup import METRIC, SKETCH, VALUE, read_hour_rollup
from tally.core.spec import MetricSpec

# New build keys carry this TTL until the switch persists them, so a publish
# that dies half-way leaves nothing behind for long.
UNSWITCHED_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class HourBuild:
    """Everything one hour publishes: values and sketches per metric and slice."""

    hour: datetime
    build: str
    values: dict[str, dict[str, float]]
    sketches: dict[str, dict[str, bytes]]
    stats: dict[str, Any] = field(default_factory=dict)


def build_id(
    values: dict[str, dict[str, float]],
    sketches: dict[str, dict[str, bytes]],
    definitions: Mapping[str, str] | None = None,
    *,
    order_dependent: Collection[str] = (),
    input_fingerprint: str | None = None,
) -> str:
    """A content hash of an hour's published data and the metric definitions it was computed under.

    Not of its statistics: a rerun of the same input is the same build. A changed
    definition is a new build even where its numbers happen to be the same.
    Sketch metrics (``order_dependent``) are identified by the input they were computed
    from instead, when it is known: a sketch's bytes, and even an HLL estimate (its
    HIP estimator), depend on the order its rows arrived in, and KLL compaction flips
    coins, so a rerun of the same input in another batch of hours gives other bytes
    and estimates a hair apart for the same data, and must still be the same build.
    """
    digest = hashlib.sha256()
    for metric, fingerprint in sorted((definitions or {}).items()):
        digest.update(f"d|{metric}|{fingerprint}\n".encode())
    by_input = set(order_dependent) if input_fingerprint is not None else set()
    for metric in sorted(values):
        for slice_text in sorted(values[metric]):
            number = f"input:{input_fingerprint}" if metric in by_input else repr(values[metric][slice_text])
            digest.update(f"v|{metric}|{slice_text}|{number}\n".encode())
    for metric in sorted(sketches):
        for slice_text in sorted(sketches[metric]):
            digest.update(f"s|{metric}|{slice_text}|".encode())
            digest.update(f"input:{input_fingerprint}".encode() if metric in by_input else sketches[metric][slice_text])
    return digest.hexdigest()[:16]


def hour_build_from_rows(
    hour: datetime,
    rows: Iterable[dict[str, Any]],
    dimensions: Sequence[str],
    stats: dict[str, Any],
    order_dependent: Collection[str] = (),
) -> HourBuild:
    """Group rollup rows (metric, dimension columns, value, sketch) into a build (``order_dependent``: build_id)."""
    values: dict[str, dict[str, float]] = {}
    sketches: dict[str, dict[str, bytes]] = {}
    for row in rows:
        labels = {dim: row[dim] for dim in dimensions if row.get(dim) is not None}
        key = slice_id(labels)
        values.setdefault(row[METRIC], {})[key] = float(row[VALUE])
        if row.get(SKETCH) is not None:
            sketches.setdefault(row[METRIC], {})[key] = bytes(row[SKETCH])
    definitions = stats.get("metric_fingerprints") or None
    identity = build_id(
        values, sketches, definitions, order_dependent=order_dependent, input_fingerprint=stats.get("input_fingerprint")
    )
    return HourBuild(hour, identity, values, sketches, stats)


def read_hour_build(data_dir: Path, hour: datetime, spec: MetricSpec) -> HourBuild:
    """Read one hour's rollup and statistics from the durable store (NotComputedError if incomplete)."""
    rollup = read_hour_rollup(data_dir, hour)
    sketched = [m.name for m in spec.stored if m.has_sketch]
    return hour_build_from_rows(hour, rollup.rows, spec.dimensions, dict(rollup.stats), sketched)


def build_definitions(build: HourBuild) -> dict[str, str]:
    """Metric -> the definition fingerprint a build computed it under (``?`` before they were recorded)."""
    recorded = build.stats.get("metric_fingerprints")
    if recorded:
        return {metric: str(fingerprint) for metric, fingerprint in dict(recorded).items()}
    # Which metrics such a build holds is not known either: any metric counts as computed there.
    return {ANY_METRIC: UNRECORDED}


def encode(value: float | bytes) -> bytes | str:
    """A hash field value: sketches as they are, whole numbers without a decimal point."""
    if isinstance(value, bytes):
        return value
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def write_build_keys(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], published_at: str
) -> list[str]:
    """Write the builds under their own keys (not yet visible); return the keys."""
    written: list[str] = []
    with client.pipeline(transaction=False) as pipe:
        for build in builds:
            hour = hour_field(build.hour)
            manifest = {
                "hour": format_hour(build.hour),
                "build": build.build,
                "published_at": published_at,
                "metrics": {m: sorted(slices) for m, slices in build.values.items()},
                "stats": build.stats,
            }
            keys_and_values: list[tuple[str, dict[str, Any]]] = []
            for metric, slices in build.values.items():
                keys_and_values.append((layout.values(build.build, hour, metric), slices))
            for metric, blobs in build.sketches.items():
                keys_and_values.append((layout.sketches(build.build, hour, metric), blobs))
            for key, mapping in keys_and_values:
                pipe.delete(key)
                if mapping:
                    pipe.hset(key, mapping={k: encode(v) for k, v in mapping.items()})
                    pipe.expire(key, UNSWITCHED_TTL_SECONDS)
                    written.append(key)
            manifest_key = layout.manifest(build.build, hour)
            pipe.set(manifest_key, json.dumps(manifest, sort_keys=True), ex=UNSWITCHED_TTL_SECONDS)
            written.append(manifest_key)
        pipe.execute()
    return written


def build_keys(client: redis.Redis, layout: KeyLayout, build: str, hour: str) -> list[str]:
    """Every key of one hour's build (its manifest lists the metrics)."""
    manifest = client.get(layout.manifest(build, hour))
    metrics = json.loads(manifest)["metrics"] if manifest else {}
    keys = [layout.manifest(build, hour)]
    for metric in metrics:
        keys += [layout.values(build, hour, metric), layout.sketches(build, hour, metric)]
    return keys
