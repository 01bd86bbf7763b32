"""Evaluating metrics over spans from one snapshot of published hours.

- count / sum: the sum of the span's hours (or of whole UTC days, when the day
  aggregate was built from exactly the hourly builds that are live);
- min / max: the extreme of the span's hours (null where none has a value);
- count_distinct: a single hour is its stored estimate; anything longer is the
  union of hourly and daily sketches (:mod:`cache.merges`), never a sum;
- quantile: the requested ``q`` of the merged KLL sketches of the span;
- ratio: each side evaluated over its own span first (a side may carry its own
  window), then divided; null when the denominator is 0.

A span with no computed hour is ``None`` (unknown); a computed hour without the
slice counts as 0 (nothing happened). A metric read through a
:class:`~dashboard_api.plan.Cover` (declared ``slices`` lacking the request's
dimension set) merges, per fetched hash, the fields of its covering set that agree
with the requested slice: the same sums and sketch unions, from finer slices.
Nothing here touches Redis or HTTP.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cache import merges
from cache import sketches as hll
from cache.keys import slice_id, slice_labels
from cache.weeks import week_days, whole_weeks
from dashboard_api.plan import Cover, HashRead, Snapshot, part_span, stored_parts
from dashboard_api.present import Number, divide, present
from dashboard_api.requests import ONE_DAY, Span
from tally.core.spec import Merge, Metric, MetricSpec

# A value with its about-95% bounds (distinct counts only; see cache.merges).
Bounds = tuple[float, float]


def any_within(sorted_hours: Sequence[datetime], span: Span) -> bool:
    """Whether some hour of ``sorted_hours`` lies in ``span`` (a binary search: ranges are long)."""
    index = bisect.bisect_left(sorted_hours, span.start)
    return index < len(sorted_hours) and sorted_hours[index] < span.end


class Evaluator:
    """Values of metrics over spans and slice sets, from one snapshot (sketches decoded once)."""

    def __init__(
        self,
        spec: MetricSpec,
        snapshot: Snapshot,
        reads: Iterable[HashRead],
        tz: ZoneInfo,
        covers: Mapping[str, Cover] | None = None,
        quantiles: Mapping[str, float] | None = None,
    ) -> None:
        self.spec = spec
        # Quantile metric -> the q asked for (others use their spec's default q).
        self._quantiles = dict(quantiles or {})
        self.snapshot = snapshot
        self.tz = tz
        self.source = {read.metric: read.source for read in reads}
        self._decoded: dict[int, Any] = {}
        self._pending = sorted(snapshot.pending)
        self._revised = sorted(snapshot.revised)
        self._outdated = {metric: sorted(hours) for metric, hours in snapshot.outdated.items()}
        self._absent = {metric: sorted(hours) for metric, hours in snapshot.absent.items()}
        self._covers = dict(covers or {})
        # id of a fetched table -> requested slice id -> the covering set's fields that merge into it.
        self._merged: dict[int, dict[str, list[str]]] = {}
        # Per read: the snapshot's tables a span's parts come from (looked up once, not per point).
        self._tables: dict[HashRead, tuple[Any, ...]] = {}

    def value(self, metric: Metric, span: Span, slices: Sequence[str]) -> Number | None:
        return self.values_over(metric, [span], slices)[0]

    def q_of(self, metric: Metric) -> float:
        """The quantile a quantile metric is read at: the request's ``q``, else its spec's."""
        return self._quantiles.get(metric.name, metric.q)

    def bounds(self, metric: Metric, span: Span, slices: Sequence[str]) -> Bounds | None:
        """About 95% bounds of a distinct count over the span (None when nothing is computed)."""
        parts = self._parts(HashRead(metric.name, "sketches"), span)
        if parts is None:
            return None
        return merges.distinct_bounds(self._combined(metric, parts, slices))

    def bounds_over(self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]) -> list[Bounds | None]:
        """``bounds`` for many spans; runs of whole days share work as in :meth:`values_over`."""
        if metric.merge is Merge.HLL:
            sliding = self._sliding_unions(metric, spans, slices)
            if sliding is not None:
                return [None if s is None else merges.distinct_bounds(s) for s in sliding]
        return [self.bounds(metric, span, slices) for span in spans]

    def combined_sketch(self, metric: Metric, span: Span, slices: Sequence[str]) -> Any:
        """The span's sketches of ``metric`` over ``slices`` merged (None when no hour is computed)."""
        parts = self._parts(HashRead(metric.name, "sketches"), span)
        return None if parts is None else self._combined(metric, parts, slices)

    def values_over(self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]) -> list[Number | None]:
        """``value`` for many spans at once; equal-length windows of whole days share work."""
        if metric.is_ratio:
            (num, num_window), (den, den_window) = stored_parts(self.spec, metric)
            numerators = self.values_over(num, [part_span(s, num_window, self.tz) for s in spans], slices)
            denominators = self.values_over(den, [part_span(s, den_window, self.tz) for s in spans], slices)
            return [divide(n, d) for n, d in zip(numerators, denominators, strict=True)]
        if self.source[metric.name] == "sketches" and metric.merge is Merge.HLL:
            sliding = self._sliding_unions(metric, spans, slices)
            if sliding is not None:
                return [None if s is None else present(s.get_estimate(), metric.kind) for s in sliding]
        return self._stored_values(metric, spans, slices)

    def _stored_values(self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]) -> list[Number | None]:
        """A stored metric's value over each span, each from the hashes of its computed hours.

        What a span costs is looked up once for all of them (a 168-point series has 168).
        """
        read = HashRead(metric.name, self.source[metric.name])
        kind, merge = metric.kind, metric.merge
        results: list[Number | None] = []
        if read.source == "sketches":
            q = self.q_of(metric) if merge is Merge.KLL else None
            for span in spans:
                parts = self._parts(read, span)
                if parts is None:
                    results.append(None)
                    continue
                combined = self._combined(metric, parts, slices)
                estimate = merges.distinct_estimate(combined) if q is None else merges.quantile(combined, q)
                results.append(present(estimate, kind))
            return results
        # Values of counts and sums add; a distinct count's (one hour, one slice: plan.source_for) is itself.
        merge = merge if merge in (Merge.MIN, Merge.MAX) else Merge.SUM
        summed = merge is Merge.SUM and metric.name not in self._covers
        for span in spans:
            parts = self._parts(read, span)
            if parts is None:
                results.append(None)
            elif summed:
                results.append(present(math.fsum([table.get(s, 0.0) for table in parts for s in slices]), kind))
            else:
                found = (table[f] for table in parts for f in self._fields(metric.name, table, slices) if f in table)
                results.append(present(merges.combine_numbers(merge, found), kind))
        return results

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
        return self.snapshot.full_days.issuperset(days) and all(hour in computed for hour in hours)

    def revised(self, metric: Metric, span: Span) -> bool:
        """Some hour the point reads holds data that replaced what was published for it before."""
        if metric.is_ratio:
            return any(self.revised(part, part_span(span, w, self.tz)) for part, w in stored_parts(self.spec, metric))
        return any_within(self._revised, span)

    def _sliding_unions(self, metric: Metric, spans: Sequence[Span], slices: Sequence[str]) -> list[Any] | None:
        """HLL unions of equal-length runs of whole UTC days, by van Herk/Gil-Werman block maxima.

        A rolling 30-day window over 90 days would otherwise union 2,700 day
        sketches. Day unions are register arrays here (see cache.sketches), so
        every window costs one element-wise maximum and one estimate. Each window is
        an HLL sketch (estimate and bounds), None where no hour is computed. Returns
        None when the spans are not runs of whole days of one length, or a day is not dense.
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
        if length == 1:  # every window is one day, its own sketch (what the general case below gives)
            return [None if b is None else hll.decode(b) for b in (blobs[(days[0] - first).days] for days, _ in runs)]
        units = np.stack([np.zeros(1 << lg_k, np.uint8) if r is None else r for r in registers])
        nonempty = np.concatenate([[0], np.cumsum([b is not None for b in blobs])])
        prefix, suffix = hll.rolling_maxima(units, length)
        results: list[Any] = []
        for days, _ in runs:
            i = (days[0] - first).days
            j = i + length - 1
            contributing = int(nonempty[j + 1] - nonempty[i])
            if contributing == 0:
                results.append(None)
            elif contributing == 1:  # one sketch keeps its own estimator: ask the library
                only = next(b for b in blobs[i : j + 1] if b is not None)
                results.append(hll.decode(only))
            else:
                window = prefix[j] if i % length == 0 else np.maximum(suffix[i], prefix[j])
                results.append(hll.decode(hll.image(window, lg_k)))
        return results

    def _day_unit(self, metric: Metric, day: date, slices: Sequence[str]) -> bytes | None:
        """One UTC day's sketch over ``slices`` (serialized); None when no hour of it is computed."""
        read = HashRead(metric.name, "sketches")
        parts = self._parts(read, Span(_midnight(day), _midnight(day) + ONE_DAY))
        if parts is None:
            return None
        blobs = [table[s] for table in parts for s in self._fields(metric.name, table, slices) if s in table]
        if len(blobs) == 1:  # the stored day union itself, as is
            return blobs[0]
        union = hll.union_of((), self.spec.sketch_lg_k)
        for blob in blobs:
            union.update(self._decode(Merge.HLL, blob))
        return hll.union_image(union)

    def _parts(self, read: HashRead, span: Span) -> list[Mapping[str, Any]] | None:
        """The fetched hashes (day and hour) that make up the span's computed hours."""
        tables = self._tables.get(read)
        if tables is None:
            tables = self._tables[read] = (
                self.snapshot.published_at,
                self.snapshot.absent.get(read.metric, frozenset()),
                self.snapshot.days.get(read, {}),
                self.snapshot.weeks.get(read, {}),
                self.snapshot.hours.get(read, {}),
            )
        computed, absent, day_data, week_data, hour_data = tables
        span_days, edge_hours = span.split()
        mondays, span_days = whole_weeks(span_days) if week_data else ([], span_days)
        parts: list[Mapping[str, Any]] = []
        any_computed = False
        for monday in mondays:
            if monday in week_data:
                if not absent or any(h not in absent for d in week_days(monday) for h in _day_hours(d)):
                    parts.append(week_data[monday])
                    any_computed = True
                continue
            span_days.extend(week_days(monday))
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

    def _combined(self, metric: Metric, parts: Sequence[Mapping[str, Any]], slices: Sequence[str]) -> Any:
        """The parts' sketches over ``slices`` merged (:func:`cache.merges.combine`)."""
        decoded = (
            self._decode(metric.merge, table[field])
            for table in parts
            for field in self._fields(metric.name, table, slices)
            if field in table
        )
        return merges.combine(metric, decoded, self.spec.sketch_lg_k)

    def _fields(self, metric: str, table: Mapping[str, Any], slices: Sequence[str]) -> Sequence[str]:
        """The fields of ``table`` (a hash of ``metric``) that make up ``slices``: themselves, unless merged."""
        cover = self._covers.get(metric)
        if cover is None:
            return slices
        merged = self._merged.get(id(table))
        if merged is None:
            merged = self._merged[id(table)] = merged_fields(table, cover)
        return [f for s in slices for f in merged.get(s, ())]

    def _decode(self, merge: Merge, blob: bytes) -> Any:
        key = id(blob)
        if key not in self._decoded:
            self._decoded[key] = merges.decode(merge, blob)
        return self._decoded[key]


def merged_fields(fields: Iterable[str], cover: Cover) -> dict[str, list[str]]:
    """Requested slice id -> the fields of exactly the covering set's keys that agree with it."""
    stored = set(cover.stored)
    merged: dict[str, list[str]] = {}
    for field in fields:
        if field.startswith("@"):  # a hash's own bookkeeping (a day's @builds), not a slice
            continue
        labels = slice_labels(field)
        if labels.keys() == stored:
            merged.setdefault(slice_id({d: labels[d] for d in cover.requested}), []).append(field)
    return merged


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day_hours(day: date) -> list[datetime]:
    return [datetime(day.year, day.month, day.day, h, tzinfo=UTC) for h in range(24)]
