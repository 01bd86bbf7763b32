"""Pure query logic: buckets, per-bucket aggregation of published hours, and series.

Nothing here touches Redis or HTTP. :mod:`dashboard_api.store` fills a
:class:`Snapshot` with the hours it read; the functions here turn it into series,
following the metric's kind:

- count / sum: a bucket is the sum over its computed hours;
- count_distinct: an hour is its stored estimate, a day the union of its hours' sketches;
- ratio: numerator / denominator, each computed at the bucket first (never an
  average of finer ratios).

A bucket with no computed hour is ``None`` (unknown); a computed hour without the
slice counts as 0 (nothing happened).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import datasketches

from cache.keys import slice_id, slice_labels
from tally.layout import ONE_HOUR
from tally.spec import Kind, Metric, MetricSpec

Grain = Literal["hour", "day"]
Source = Literal["values", "sketches"]
Number = int | float

STEP: Mapping[str, timedelta] = {"hour": ONE_HOUR, "day": timedelta(days=1)}

# metric's data per computed hour: hour -> slice id -> value (or serialized sketch).
# An hour missing from the mapping was not computed.
HourValues = Mapping[datetime, Mapping[str, float]]
HourSketches = Mapping[datetime, Mapping[str, bytes]]


@dataclass(frozen=True)
class HashRead:
    """One per-hour Redis hash a query needs: a metric's values or its sketches."""

    metric: str
    source: Source


@dataclass(frozen=True)
class Snapshot:
    """What the store read for a range: every fetched hash of every computed hour."""

    values: Mapping[str, HourValues] = field(default_factory=dict)
    sketches: Mapping[str, HourSketches] = field(default_factory=dict)
    # hour -> published_at of its live build; holds exactly the computed hours.
    published_at: Mapping[datetime, str] = field(default_factory=dict)

    @property
    def as_of(self) -> str | None:
        # published_at is fixed-width ISO text, so text order is time order.
        return max(self.published_at.values(), default=None)


@dataclass(frozen=True)
class SeriesData:
    labels: dict[str, str]
    points: list[tuple[datetime, Number | None]]


# --- buckets -----------------------------------------------------------------


def is_aligned(instant: datetime, grain: Grain) -> bool:
    """Whether ``instant`` starts a bucket: a whole UTC hour, or a UTC midnight for days."""
    utc = instant.astimezone(UTC)
    floored = utc.replace(minute=0, second=0, microsecond=0)
    if grain == "day":
        floored = floored.replace(hour=0)
    return utc == floored


def bucket_count(start: datetime, end: datetime, grain: Grain) -> int:
    """How many buckets [start, end) holds (checked before any list is built)."""
    if end <= start:
        return 0
    return math.ceil((end - start) / STEP[grain])


def bucket_starts(start: datetime, end: datetime, grain: Grain) -> list[datetime]:
    """The start of every bucket in [start, end), in order."""
    return [start + i * STEP[grain] for i in range(bucket_count(start, end, grain))]


def bucket_hours(bucket_start: datetime, grain: Grain) -> list[datetime]:
    """The hours a bucket aggregates."""
    return [bucket_start + i * ONE_HOUR for i in range(STEP[grain] // ONE_HOUR)]


def range_hours(buckets: Sequence[datetime], grain: Grain) -> list[datetime]:
    return [hour for bucket in buckets for hour in bucket_hours(bucket, grain)]


# --- one bucket of one slice ---------------------------------------------------


def sum_hours(values: HourValues, hours: Iterable[datetime], slice_text: str) -> float | None:
    """Sum of the slice over the computed hours; None if none is computed."""
    computed = [values[hour] for hour in hours if hour in values]
    if not computed:
        return None
    return math.fsum(hour_values.get(slice_text, 0.0) for hour_values in computed)


def union_hours(sketches: HourSketches, hours: Iterable[datetime], slice_text: str, lg_k: int) -> float | None:
    """Distinct-count estimate of the union of the computed hours' sketches."""
    computed = [sketches[hour] for hour in hours if hour in sketches]
    if not computed:
        return None
    union = datasketches.hll_union(lg_k)
    for hour_sketches in computed:
        blob = hour_sketches.get(slice_text)
        if blob is not None:
            union.update(datasketches.hll_sketch.deserialize(blob))
    return union.get_estimate()


def divide(numerator: Number | None, denominator: Number | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def present(value: float | None, kind: Kind) -> Number | None:
    """How a value is served: counts as integers, sums and ratios as floats."""
    if value is None:
        return None
    if kind in (Kind.COUNT, Kind.COUNT_DISTINCT):
        return round(value)
    # 12 significant digits drop binary noise from summing decimals (1983.3400000000001).
    return float(f"{value:.12g}")


def bucket_value(
    spec: MetricSpec,
    metric: Metric,
    snapshot: Snapshot,
    hours: Sequence[datetime],
    grain: Grain,
    slice_text: str,
) -> Number | None:
    """The served value of one slice in one bucket."""
    if metric.is_ratio:
        numerator, denominator = (
            bucket_value(spec, _part(spec, name), snapshot, hours, grain, slice_text)
            for name in (metric.numerator, metric.denominator)
        )
        return divide(numerator, denominator)
    if metric.is_distinct and grain == "day":
        sketches = snapshot.sketches.get(metric.name, {})
        return present(union_hours(sketches, hours, slice_text, spec.sketch_lg_k), metric.kind)
    values = snapshot.values.get(metric.name, {})
    return present(sum_hours(values, hours, slice_text), metric.kind)


def _part(spec: MetricSpec, name: str | None) -> Metric:
    part = spec.get(name or "")
    if part is None:  # load_spec guarantees ratio parts exist
        raise LookupError(f"ratio part {name!r} is not in the spec")
    return part


# --- what to read, and the series ------------------------------------------------


def hashes_needed(spec: MetricSpec, metric: Metric, grain: Grain) -> list[HashRead]:
    """The per-hour hashes that answer ``metric`` at ``grain``, without duplicates."""
    if metric.is_ratio:
        parts = [_part(spec, metric.numerator), _part(spec, metric.denominator)]
        reads = [read for part in parts for read in hashes_needed(spec, part, grain)]
        return list(dict.fromkeys(reads))
    # Hourly distinct estimates are stored; only a day needs the sketches to union.
    source: Source = "sketches" if metric.is_distinct and grain == "day" else "values"
    return [HashRead(metric.name, source)]


def seen_slices(snapshot: Snapshot) -> set[str]:
    """Every slice id present in any fetched hash of any hour."""
    tables: list[Mapping[datetime, Mapping[str, object]]] = [
        *snapshot.values.values(),
        *snapshot.sketches.values(),
    ]
    return {slice_text for table in tables for hour in table.values() for slice_text in hour}


def group_values(slice_texts: Iterable[str], filters: Mapping[str, str], group_by: str) -> list[str]:
    """Sorted values of ``group_by`` among slices of exactly the filters plus ``group_by``."""
    wanted = set(filters) | {group_by}
    found: set[str] = set()
    for slice_text in slice_texts:
        labels = slice_labels(slice_text)
        if labels.keys() == wanted and all(labels[d] == v for d, v in filters.items()):
            found.add(labels[group_by])
    return sorted(found)


def series_labels(snapshot: Snapshot, filters: Mapping[str, str], group_by: str | None) -> list[dict[str, str]]:
    """The labels of every series in the response, in order."""
    if group_by is None:
        return [dict(filters)]
    values = group_values(seen_slices(snapshot), filters, group_by)
    return [{**filters, group_by: value} for value in values]


def build_series(
    spec: MetricSpec,
    metric: Metric,
    snapshot: Snapshot,
    buckets: Sequence[datetime],
    grain: Grain,
    filters: Mapping[str, str],
    group_by: str | None,
) -> list[SeriesData]:
    hours_by_bucket = [(bucket, bucket_hours(bucket, grain)) for bucket in buckets]
    series = []
    for labels in series_labels(snapshot, filters, group_by):
        slice_text = slice_id(labels)
        points = [
            (bucket, bucket_value(spec, metric, snapshot, hours, grain, slice_text))
            for bucket, hours in hours_by_bucket
        ]
        series.append(SeriesData(labels=labels, points=points))
    return series
