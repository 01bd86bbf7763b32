"""Pure query logic: what to read for a request, and turning what was read into series.

Nothing here touches Redis or HTTP. A request becomes *spans* (UTC hour ranges):
one per bucket, or per bucket's rolling window. :func:`plan_reads` lists the
Redis hashes those spans need; :mod:`dashboard_api.store` reads them into a
:class:`Snapshot`; :func:`build_series` evaluates every point from it:

- count / sum: the sum of the span's hours (or of whole UTC days, when the day
  aggregate was built from exactly the hourly builds that are live);
- count_distinct: a single hour is its stored estimate; anything longer is the
  union of hourly and daily sketches, never a sum;
- ratio: each side evaluated over its own span first (a side may carry its own
  window), then divided; null when the denominator is 0.

A span with no computed hour is ``None`` (unknown); a computed hour without the
slice counts as 0 (nothing happened).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

from cache import sketches as hll
from cache.keys import slice_id, slice_labels
from dashboard_api.calendar import Grain, bucket_bounds, days_back, utc_hours
from tally.core.layout import ONE_HOUR
from tally.core.spec import Kind, Metric, MetricSpec

Source = Literal["values", "sketches"]
Number = int | float
OTHER = "other"
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class HashRead:
    """One kind of Redis hash a query needs: a metric's values or its sketches."""

    metric: str
    source: Source


@dataclass(frozen=True)
class Span:
    """A half-open range of whole UTC hours."""

    start: datetime
    end: datetime

    def split(self) -> tuple[list[date], list[datetime]]:
        """The whole UTC days inside the span, and the hours outside them."""
        first_midnight = self.start.replace(hour=0)
        if first_midnight < self.start:
            first_midnight += ONE_DAY
        last_midnight = self.end.replace(hour=0)
        if first_midnight >= last_midnight:
            return [], utc_hours(self.start, self.end)
        days = [(first_midnight + i * ONE_DAY).date() for i in range((last_midnight - first_midnight) // ONE_DAY)]
        return days, utc_hours(self.start, first_midnight) + utc_hours(last_midnight, self.end)


@dataclass(frozen=True)
class SeriesRequest:
    """A validated metric request."""

    metric: Metric
    grain: Grain
    tz: ZoneInfo
    start: datetime
    end: datetime
    filters: dict[str, str] = field(default_factory=dict)
    group_by: str | None = None
    limit: int | None = None
    window_days: int | None = None

    @property
    def buckets(self) -> list[tuple[datetime, datetime]]:
        return bucket_bounds(self.start, self.end, self.grain, self.tz)


@dataclass(frozen=True)
class ReadPlan:
    """What the store must read: pointers for every hour of the range, then data."""

    start: datetime
    end: datetime
    hours: dict[HashRead, frozenset[datetime]]
    days: dict[HashRead, frozenset[date]]
    slices: tuple[str, ...] | None  # None: whole hashes (group_by)
    # Stored metric -> the fingerprint of its definition in the spec now (tally.core.spec.metric_fingerprint).
    definitions: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_days(self) -> frozenset[date]:
        """Every UTC day the plan touches, whole or by some of its hours."""
        days = {day for wanted in self.days.values() for day in wanted}
        days |= {hour.date() for wanted in self.hours.values() for hour in wanted}
        return frozenset(days)


@dataclass(frozen=True)
class Snapshot:
    """What the store read. Days appear only where their aggregate matches the live hours."""

    published_at: Mapping[datetime, str] = field(default_factory=dict)  # exactly the computed hours
    hours: Mapping[HashRead, Mapping[datetime, Mapping[str, Any]]] = field(default_factory=dict)
    days: Mapping[HashRead, Mapping[date, Mapping[str, Any]]] = field(default_factory=dict)
    # Newest publish time of each whole day read through the day index.
    day_published_at: Mapping[date, str] = field(default_factory=dict)
    # Whole UTC days all 24 of whose hours are computed.
    full_days: frozenset[date] = frozenset()
    # Hours whose live data replaced data published earlier (late input, a rerun, a rollback).
    revised: frozenset[datetime] = frozenset()
    # Hours known to be out of date until a run publishes them (see cache.freshness).
    pending: frozenset[datetime] = frozenset()
    # Digest of every build read: the response's build identifier.
    version: str = ""
    # Stored metric -> hours whose live build holds it under another definition than the spec's now.
    outdated: Mapping[str, frozenset[datetime]] = field(default_factory=dict)
    # Stored metric -> computed hours whose live build does not hold it (added to the spec since).
    absent: Mapping[str, frozenset[datetime]] = field(default_factory=dict)

    @property
    def as_of(self) -> str | None:
        # published_at is fixed-width ISO text, so text order is time order.
        return max([*self.published_at.values(), *self.day_published_at.values()], default=None)


@dataclass(frozen=True)
class SeriesData:
    labels: dict[str, str]
    points: list[tuple[datetime, Number | None]]
    other: bool = False
    complete: list[bool] = field(default_factory=list)
    revised: list[bool] = field(default_factory=list)


# --- spans ---------------------------------------------------------------------


def point_spans(request: SeriesRequest) -> list[Span]:
    """One span per bucket: the bucket itself, or the window ending at its end."""
    spans = []
    for start, end in request.buckets:
        if request.window_days:
            start = days_back(end, request.window_days, request.tz)
        spans.append(Span(start, end))
    return spans


def any_within(sorted_hours: Sequence[datetime], span: Span) -> bool:
    """Whether some hour of ``sorted_hours`` lies in ``span`` (a binary search: ranges are long)."""
    index = bisect.bisect_left(sorted_hours, span.start)
    return index < len(sorted_hours) and sorted_hours[index] < span.end


def part_span(span: Span, window_days: int | None, tz: ZoneInfo) -> Span:
    return Span(days_back(span.end, window_days, tz), span.end) if window_days else span


def stored_parts(spec: MetricSpec, metric: Metric) -> list[tuple[Metric, int | None]]:
    """The stored metrics a metric reads, each with the window of its side."""
    if not metric.is_ratio:
        return [(metric, None)]
    return [
        (_part(spec, metric.numerator), metric.numerator_window_days),
        (_part(spec, metric.denominator), metric.denominator_window_days),
    ]


def _part(spec: MetricSpec, name: str | None) -> Metric:
    part = spec.get(name or "")
    if part is None:  # load_spec guarantees ratio parts exist
        raise LookupError(f"ratio part {name!r} is not in the spec")
    return part


def evaluation_spans(spec: MetricSpec, request: SeriesRequest) -> dict[str, list[Span]]:
    """Every span each stored metric is evaluated over (points, and the ranking for limit)."""
    spans = point_spans(request)
    if request.limit:
        spans.append(Span(request.start, request.end))
    needed: dict[str, list[Span]] = {}
    for part, window in stored_parts(spec, request.metric):
        needed.setdefault(part.name, []).extend(part_span(s, window, request.tz) for s in spans)
    return needed


def source_for(metric: Metric, spans: Sequence[Span], single_slice: bool) -> Source:
    # Hourly distinct estimates are stored; only longer spans or merged slices need sketches.
    if metric.is_distinct and (not single_slice or any(s.end - s.start > ONE_HOUR for s in spans)):
        return "sketches"
    return "values"


def plan_reads(spec: MetricSpec, request: SeriesRequest) -> ReadPlan:
    slices = None if request.group_by else (slice_id(request.filters),)
    needed = evaluation_spans(spec, request)
    return plan_spans(spec, needed, slices, request.start, request.end, single_slice=request.limit is None)


def plan_spans(
    spec: MetricSpec,
    needed: Mapping[str, Sequence[Span]],
    slices: tuple[str, ...] | None,
    start: datetime,
    end: datetime,
    *,
    single_slice: bool,
) -> ReadPlan:
    """The reads that evaluate each stored metric of ``needed`` over its spans."""
    hours: dict[HashRead, set[datetime]] = {}
    days: dict[HashRead, set[date]] = {}
    for name, spans in needed.items():
        metric = _part(spec, name)
        read = HashRead(name, source_for(metric, spans, single_slice=single_slice))
        for span in spans:
            span_days, edge_hours = span.split()
            days.setdefault(read, set()).update(span_days)
            hours.setdefault(read, set()).update(edge_hours)
            start, end = min(start, span.start), max(end, span.end)
    return ReadPlan(
        start=start,
        end=end,
        hours={r: frozenset(h) for r, h in hours.items()},
        days={r: frozenset(d) for r, d in days.items()},
        slices=slices,
        definitions={r.metric: spec.fingerprints[r.metric] for r in hours if r.metric in spec.fingerprints},
    )


# --- evaluation -----------------------------------------------------------------


class Evaluator:
    """Values of metrics over spans and slice sets, from one snapshot (sketches decoded once)."""

    def __init__(self, spec: MetricSpec, snapshot: Snapshot, reads: Iterable[HashRead], tz: ZoneInfo) -> None:
        self.spec = spec
        self.snapshot = snapshot
        self.tz = tz
        self.source = {read.metric: read.source for read in reads}
        self._decoded: dict[int, Any] = {}
        self._pending = sorted(snapshot.pending)
        self._revised = sorted(snapshot.revised)
        self._outdated = {metric: sorted(hours) for metric, hours in snapshot.outdated.items()}
        self._absent = {metric: sorted(hours) for metric, hours in snapshot.absent.items()}

    def value(self, metric: Metric, span: Span, slices: Sequence[str]) -> Number | None:
        if metric.is_ratio:
            (num, num_window), (den, den_window) = stored_parts(self.spec, metric)
            numerator = self.value(num, part_span(span, num_window, self.tz), slices)
            denominator = self.value(den, part_span(span, den_window, self.tz), slices)
            return divide(numerator, denominator)
        read = HashRead(metric.name, self.source[metric.name])
        parts = self._parts(read, span)
        if parts is None:
            return None
        if read.source == "sketches":
            return present(self._union(parts, slices), metric.kind)
        return present(math.fsum(table.get(s, 0.0) for table in parts for s in slices), metric.kind)

    def values_over(self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]) -> list[Number | None]:
        """``value`` for many spans at once; equal-length windows of whole days share work."""
        if metric.is_ratio:
            (num, num_window), (den, den_window) = stored_parts(self.spec, metric)
            numerators = self.values_over(num, [part_span(s, num_window, self.tz) for s in spans], slices)
            denominators = self.values_over(den, [part_span(s, den_window, self.tz) for s in spans], slices)
            return [divide(n, d) for n, d in zip(numerators, denominators, strict=True)]
        if self.source[metric.name] == "sketches":
            sliding = self._sliding_unions(metric, spans, slices)
            if sliding is not None:
                return [present(v, metric.kind) for v in sliding]
        return [self.value(metric, span, slices) for span in spans]

    def complete(self, metric: Metric, span: Span, now: datetime) -> bool:
        """Every hour the point reads is computed, with the metric's current definition; none pending.

        Hours computed under another definition of the metric, or before it was
        added, are served as they are (or as not computed) but make the point incomplete.
        """
        if metric.is_ratio:
            return all(
                self.complete(part, part_span(span, w, self.tz), now) for part, w in stored_parts(self.spec, metric)
            )
        if span.end > now or any_within(self._pending, span):
            return False
        if any_within(self._outdated.get(metric.name, []), span) or any_within(self._absent.get(metric.name, []), span):
            return False
        days, hours = span.split()
        computed = self.snapshot.published_at
        return all(day in self.snapshot.full_days for day in days) and all(hour in computed for hour in hours)

    def revised(self, metric: Metric, span: Span) -> bool:
        """Some hour the point reads holds data that replaced what was published for it before."""
        if metric.is_ratio:
            return any(self.revised(part, part_span(span, w, self.tz)) for part, w in stored_parts(self.spec, metric))
        return any_within(self._revised, span)

    def _sliding_unions(
        self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]
    ) -> list[float | None] | None:
        """Unions of equal-length runs of whole UTC days, by van Herk/Gil-Werman block maxima.

        A rolling 30-day window over 90 days would otherwise union 2,700 day
        sketches. Day unions are register arrays here (see dashboard_api.hll), so
        every window costs one element-wise maximum and one estimate. Returns None
        when the spans are not runs of whole days of one length, or a day is not dense.
        """
        runs = [span.split() for span in spans]
        lengths = {len(days) for days, _ in runs}
        if len(spans) < 3 or len(lengths) != 1 or any(hours for _, hours in runs) or 0 in lengths:
            return None
        length, lg_k = lengths.pop(), self.spec.sketch_lg_k
        first = min(days[0] for days, _ in runs)
        count = (max(days[-1] for days, _ in runs) - first).days + 1
        blobs = [self._day_unit(metric, first + timedelta(days=i), slices) for i in range(count)]
        registers = [None if b is None else hll.dense_registers(b, lg_k) for b in blobs]
        if any(r is None and b is not None for r, b in zip(registers, blobs, strict=True)):
            return None
        units = np.stack([np.zeros(1 << lg_k, np.uint8) if r is None else r for r in registers])
        nonempty = np.concatenate([[0], np.cumsum([b is not None for b in blobs])])
        prefix, suffix = hll.rolling_maxima(units, length)
        results: list[float | None] = []
        for days, _ in runs:
            i = (days[0] - first).days
            j = i + length - 1
            contributing = int(nonempty[j + 1] - nonempty[i])
            if contributing == 0:
                results.append(None)
            elif contributing == 1:  # one sketch keeps its own estimator: ask the library
                only = next(b for b in blobs[i : j + 1] if b is not None)
                results.append(hll.estimate_of(only))
            else:
                window = prefix[j] if i % length == 0 else np.maximum(suffix[i], prefix[j])
                results.append(hll.estimate(window, lg_k))
        return results

    def _day_unit(self, metric: Metric, day: date, slices: Sequence[str]) -> bytes | None:
        """One UTC day's sketch over ``slices`` (serialized); None when no hour of it is computed."""
        read = HashRead(metric.name, "sketches")
        parts = self._parts(read, Span(_midnight(day), _midnight(day) + ONE_DAY))
        if parts is None:
            return None
        blobs = [table[s] for table in parts for s in slices if s in table]
        if len(blobs) == 1:  # the stored day union itself, as is
            return blobs[0]
        union = hll.union_of((), self.spec.sketch_lg_k)
        for blob in blobs:
            union.update(self._decode(blob))
        return hll.union_image(union)

    def _parts(self, read: HashRead, span: Span) -> list[Mapping[str, Any]] | None:
        """The fetched hashes (day and hour) that make up the span's computed hours."""
        computed = self.snapshot.published_at
        absent = self.snapshot.absent.get(read.metric, frozenset())
        day_data = self.snapshot.days.get(read, {})
        hour_data = self.snapshot.hours.get(read, {})
        span_days, edge_hours = span.split()
        parts: list[Mapping[str, Any]] = []
        any_computed = False
        for day in span_days:
            if day in day_data:
                # A day aggregate holds the hours that have the metric; none may (a metric added since).
                if not absent or any(h not in absent for h in _day_hours(day)):
                    parts.append(day_data[day])
                    any_computed = True
                continue
            edge_hours.extend(_day_hours(day))
        for hour in edge_hours:
            if hour in computed and hour not in absent:
                any_computed = True
                parts.append(hour_data[hour])
        return parts if any_computed else None

    def _union(self, parts: Sequence[Mapping[str, Any]], slices: Sequence[str]) -> float:
        union = hll.union_of((), self.spec.sketch_lg_k)
        for table in parts:
            for slice_text in slices:
                blob = table.get(slice_text)
                if blob is not None:
                    union.update(self._decode(blob))
        return union.get_estimate()

    def _decode(self, blob: bytes) -> Any:
        key = id(blob)
        if key not in self._decoded:
            self._decoded[key] = hll.decode(blob)
        return self._decoded[key]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day_hours(day: date) -> list[datetime]:
    return [datetime(day.year, day.month, day.day, h, tzinfo=UTC) for h in range(24)]


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


# --- series -----------------------------------------------------------------------


def seen_slices(snapshot: Snapshot) -> set[str]:
    """Every slice id present in any fetched hash."""
    tables = [*snapshot.hours.values(), *snapshot.days.values()]
    return {slice_text for table in tables for data in table.values() for slice_text in data}


def group_values(slice_texts: Iterable[str], filters: Mapping[str, str], group_by: str) -> list[str]:
    """Sorted values of ``group_by`` among slices of exactly the filters plus ``group_by``."""
    wanted = set(filters) | {group_by}
    found: set[str] = set()
    for slice_text in slice_texts:
        if slice_text.startswith("@"):
            continue
        labels = slice_labels(slice_text)
        if labels.keys() == wanted and all(labels[d] == v for d, v in filters.items()):
            found.add(labels[group_by])
    return sorted(found)


def ranked(evaluator: Evaluator, request: SeriesRequest, values: list[str]) -> tuple[list[str], list[str]]:
    """The ``limit`` largest group values by their total over the range, and the rest."""
    whole = Span(request.start, request.end)

    def total(value: str) -> float:
        result = evaluator.value(request.metric, whole, [slice_id({**request.filters, request.group_by: value})])
        return -math.inf if result is None else result

    order = sorted(values, key=lambda v: (-total(v), v))
    return order[: request.limit], order[request.limit :]


def build_series(
    spec: MetricSpec, request: SeriesRequest, plan: ReadPlan, snapshot: Snapshot, now: datetime | None = None
) -> list[SeriesData]:
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz)
    spans = point_spans(request)
    moment = now or datetime.now(UTC)
    complete = [evaluator.complete(request.metric, span, moment) for span in spans]
    revised = [evaluator.revised(request.metric, span) for span in spans]
    starts = [start for start, _ in request.buckets]
    targets: list[tuple[dict[str, str], list[str], bool]]
    if request.group_by is None:
        targets = [(dict(request.filters), [slice_id(request.filters)], False)]
    else:
        values = group_values(seen_slices(snapshot), request.filters, request.group_by)
        rest: list[str] = []
        if request.limit is not None:
            values, rest = ranked(evaluator, request, values)
        labelled = [{**request.filters, request.group_by: v} for v in values]
        targets = [(labels, [slice_id(labels)], False) for labels in labelled]
        if rest:
            rest_slices = [slice_id({**request.filters, request.group_by: v}) for v in rest]
            targets.append(({**request.filters, request.group_by: OTHER}, rest_slices, True))
    return [
        SeriesData(
            labels=labels,
            points=list(zip(starts, evaluator.values_over(request.metric, spans, slices), strict=True)),
            other=other,
            complete=complete,
            revised=revised,
        )
        for labels, slices, other in targets
    ]


# --- dimension values ---------------------------------------------------------------


@dataclass(frozen=True)
class ValuesRequest:
    """A validated request for the values a dimension took over a range."""

    metric: Metric
    dimension: str
    tz: ZoneInfo
    start: datetime
    end: datetime


def plan_values(spec: MetricSpec, request: ValuesRequest) -> ReadPlan:
    """Whole hashes (every slice) over the range: one span per stored part, its window included."""
    whole = Span(request.start, request.end)
    needed: dict[str, list[Span]] = {}
    for part, window in stored_parts(spec, request.metric):
        needed.setdefault(part.name, []).append(part_span(whole, window, request.tz))
    return plan_spans(spec, needed, None, request.start, request.end, single_slice=False)


def dimension_values(
    spec: MetricSpec, request: ValuesRequest, plan: ReadPlan, snapshot: Snapshot
) -> list[tuple[str, Number | None]]:
    """Each value of the dimension in a stored slice of the range (sorted), with the metric over the range.

    A ratio's figure is its denominator's: what the ratio is taken over (a value
    that only its numerator saw has 0).
    """
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz)
    counted, window = stored_parts(spec, request.metric)[-1]
    span = part_span(Span(request.start, request.end), window, request.tz)
    values = group_values(seen_slices(snapshot), {}, request.dimension)
    return [(value, evaluator.value(counted, span, [slice_id({request.dimension: value})])) for value in values]


def seen_values(snapshot: Snapshot, dimensions: Iterable[str]) -> dict[str, set[str]]:
    """Per dimension: the values it takes in the single-dimension slices of every fetched hash."""
    slices = seen_slices(snapshot)
    return {dim: set(group_values(slices, {}, dim)) for dim in dimensions}


def slice_seen(snapshot: Snapshot, filters: Mapping[str, str]) -> bool:
    """Whether the slice of exactly ``filters`` is in some fetched hash."""
    return slice_id(filters) in seen_slices(snapshot)


def unseen_filter_values(filters: Mapping[str, str], seen: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """The (dimension, value) filters whose value no stored slice holds, where the dimension has some value.

    A dimension with no value at all in the range says nothing (no hour computed):
    the points are null already.
    """
    unseen = []
    for dim, value in sorted(filters.items()):
        known = set(seen.get(dim, ()))
        if known and value not in known:
            unseen.append((dim, value))
    return unseen
