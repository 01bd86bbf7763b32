"""What to read for a request: its spans, the Redis hashes they need, and the snapshot read back.

A request becomes *spans* (UTC hour ranges): one per bucket, or per bucket's
rolling window. :func:`plan_reads` lists the Redis hashes those spans need, and
:func:`slice_covers` which stored slice set answers each metric read (a metric
with declared ``slices`` may answer from a larger set, merged at read time);
:mod:`dashboard_api.store` reads them into a :class:`Snapshot`, which
:mod:`dashboard_api.evaluate` turns into values. Nothing here touches Redis or HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cache.keys import slice_id
from cache.weeks import has_weeks, week_days, whole_weeks
from dashboard_api.calendar import days_back
from dashboard_api.errors import ApiError
from dashboard_api.requests import SeriesRequest, Span, ValuesRequest
from tally.core.layout import ONE_HOUR
from tally.core.spec import Merge, Metric, MetricSpec

Source = Literal["values", "sketches"]


@dataclass(frozen=True)
class HashRead:
    """One kind of Redis hash a query needs: a metric's values or its sketches."""

    metric: str
    source: Source


@dataclass(frozen=True)
class Cover:
    """A stored metric that lacks the request's dimension set: read from a larger stored set, merged.

    A requested slice (values of ``requested``) is then the merge of the fields
    whose labels have exactly the keys of ``stored`` and agree with it on ``requested``.
    """

    requested: tuple[str, ...]  # the request's dimensions (filters and group_by), sorted
    stored: tuple[str, ...]  # the smallest stored set containing them


@dataclass(frozen=True)
class ReadPlan:
    """What the store must read: pointers for every hour of the range, then data."""

    start: datetime
    end: datetime
    hours: dict[HashRead, frozenset[datetime]]
    days: dict[HashRead, frozenset[date]]
    slices: tuple[str, ...] | None  # None: whole hashes (group_by)
    # Mondays of the whole UTC weeks read from week aggregates (theta sketches, cache.weeks).
    weeks: Mapping[HashRead, frozenset[date]] = field(default_factory=dict)
    # Stored metric -> the fingerprint of its definition in the spec now (tally.core.spec.metric_fingerprint).
    definitions: Mapping[str, str] = field(default_factory=dict)
    # Stored metric -> its Cover, for the metrics answered by merging (none by default).
    covers: Mapping[str, Cover] = field(default_factory=dict)

    @property
    def all_days(self) -> frozenset[date]:
        """Every UTC day the plan touches, whole, in a whole week or by some of its hours."""
        days = {day for wanted in self.days.values() for day in wanted}
        days |= {day for wanted in self.weeks.values() for monday in wanted for day in week_days(monday)}
        days |= {hour.date() for wanted in self.hours.values() for hour in wanted}
        return frozenset(days)


@dataclass(frozen=True)
class Snapshot:
    """What the store read. Days appear only where their aggregate matches the live hours."""

    published_at: Mapping[datetime, str] = field(default_factory=dict)  # exactly the computed hours
    hours: Mapping[HashRead, Mapping[datetime, Mapping[str, Any]]] = field(default_factory=dict)
    days: Mapping[HashRead, Mapping[date, Mapping[str, Any]]] = field(default_factory=dict)
    # Week aggregates by Monday, only where their @days match the day index (cache.weeks).
    weeks: Mapping[HashRead, Mapping[date, Mapping[str, Any]]] = field(default_factory=dict)
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

    def fetched(self) -> Iterator[tuple[HashRead, Mapping[str, Any]]]:
        """Every fetched hash (of an hour, a day or a week), with the read it answers."""
        for tables in (self.hours, self.days, self.weeks):
            for read, by_time in tables.items():
                for data in by_time.values():
                    yield read, data

    @property
    def as_of(self) -> str | None:
        # published_at is fixed-width ISO text, so text order is time order.
        return max([*self.published_at.values(), *self.day_published_at.values()], default=None)


# --- spans ---------------------------------------------------------------------


def point_spans(request: SeriesRequest) -> list[Span]:
    """One span per bucket: the bucket itself, or the window ending at its end (a copy: callers extend it)."""
    return list(request.spans)


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


# --- reads -----------------------------------------------------------------------


def source_for(metric: Metric, spans: Sequence[Span], single_slice: bool) -> Source:
    # Hourly distinct estimates are stored; only longer spans or merged slices need sketches.
    # A quantile always does: any q may be asked for, and the hour's value is its count.
    if metric.merge is Merge.KLL:
        return "sketches"
    if metric.is_distinct and (not single_slice or any(s.end - s.start > ONE_HOUR for s in spans)):
        return "sketches"
    return "values"


def slice_covers(spec: MetricSpec, metric: Metric, dims: Collection[str]) -> dict[str, Cover]:
    """Each stored metric ``metric`` reads that must merge a larger stored set to answer ``dims``.

    Empty when every part stores ``dims`` itself (always, for metrics without
    declared ``slices``). A part that stores no set containing ``dims`` is a 400
    ``slice_not_stored`` naming the sets it stores.
    """
    requested = tuple(sorted(dims))
    covers: dict[str, Cover] = {}
    for part, _ in stored_parts(spec, metric):
        if part.slices is None:
            continue
        stored = part.covering_set(requested)
        if stored is None:
            owner = f"metric {metric.name!r}" if part is metric else f"ratio {metric.name!r}: its part {part.name!r}"
            sets = "; ".join(f"[{', '.join(s)}]" for s in part.slice_dimension_sets())
            raise ApiError(
                "slice_not_stored",
                f"{owner} stores no slice set containing [{', '.join(requested)}] (the filters and group_by); "
                f"it stores: {sets}",
            )
        if stored != requested:
            covers[part.name] = Cover(requested, stored)
    return covers


def request_dimensions(request: SeriesRequest) -> set[str]:
    """The dimension set a series request slices by: its filters and its group_by."""
    return {*request.filters, *([request.group_by] if request.group_by else [])}


def plan_reads(spec: MetricSpec, request: SeriesRequest) -> ReadPlan:
    covers = slice_covers(spec, request.metric, request_dimensions(request))
    # Merging reads whole hashes: the fields of the covering set are not known in advance.
    slices = None if request.group_by or covers else (slice_id(request.filters),)
    needed = evaluation_spans(spec, request)
    # Bounds come from the sketches, even over one hour (whose estimate alone is stored as a value).
    single_slice = request.limit is None and not request.bounds
    return plan_spans(spec, needed, slices, request.start, request.end, single_slice=single_slice, covers=covers)


def plan_values(spec: MetricSpec, request: ValuesRequest) -> ReadPlan:
    """Whole hashes (every slice) over the range: one span per stored part, its window included."""
    whole = Span(request.start, request.end)
    needed: dict[str, list[Span]] = {}
    for part, window in stored_parts(spec, request.metric):
        needed.setdefault(part.name, []).append(part_span(whole, window, request.tz))
    covers = slice_covers(spec, request.metric, {request.dimension})
    return plan_spans(spec, needed, None, request.start, request.end, single_slice=False, covers=covers)


def plan_spans(
    spec: MetricSpec,
    needed: Mapping[str, Sequence[Span]],
    slices: tuple[str, ...] | None,
    start: datetime,
    end: datetime,
    *,
    single_slice: bool,
    covers: Mapping[str, Cover] | None = None,
) -> ReadPlan:
    """The reads that evaluate each stored metric of ``needed`` over its spans.

    A metric in ``covers`` merges several stored slices into each requested one:
    a distinct count then unions sketches, even over a single hour. The sketches
    of a metric with week aggregates are read by whole UTC weeks where a span has them.
    """
    covers = covers or {}
    hours: dict[HashRead, set[datetime]] = {}
    days: dict[HashRead, set[date]] = {}
    weeks: dict[HashRead, set[date]] = {}
    for name, spans in needed.items():
        if not spans:
            continue
        metric = _part(spec, name)
        read = HashRead(name, source_for(metric, spans, single_slice=single_slice and name not in covers))
        weekly = read.source == "sketches" and has_weeks(metric)
        read_weeks, read_days, read_hours = (
            weeks.setdefault(read, set()),
            days.setdefault(read, set()),
            hours.setdefault(read, set()),
        )
        for span in spans:
            span_days, edge_hours = span.split()
            if weekly:
                mondays, span_days = whole_weeks(span_days)
                read_weeks.update(mondays)
            read_days.update(span_days)
            read_hours.update(edge_hours)
        start, end = min(start, *(s.start for s in spans)), max(end, *(s.end for s in spans))
    return ReadPlan(
        start=start,
        end=end,
        hours={r: frozenset(h) for r, h in hours.items()},
        days={r: frozenset(d) for r, d in days.items()},
        slices=slices,
        weeks={r: frozenset(w) for r, w in weeks.items() if w},
        definitions={r.metric: spec.fingerprints[r.metric] for r in hours if r.metric in spec.fingerprints},
        covers=dict(covers),
    )
