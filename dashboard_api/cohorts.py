"""Retention cohorts and funnels: theta sketch intersections over buckets, from one snapshot.

``GET /v1/retention``: for each cohort bucket B and offset k, the ids of the
cohort metric during B that are also in the returning metric during B+k.
``GET /v1/funnel``: for each bucket, the ids in every one of steps 1..i. Both
read theta sketches (``count_distinct`` with ``sketch: theta``) through the
same plan, store and evaluator as series, so buckets, time zones, declared
slices, pending and revised hours behave exactly as they do there. An
intersection's estimate and bounds come from the theta sketch it yields
(:mod:`cache.merges`): its relative error grows as the intersection shrinks.
Nothing here touches Redis or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cache import merges
from cache.keys import slice_id
from dashboard_api.calendar import Grain, bucket_bounds, buckets_from, format_ts
from dashboard_api.evaluate import Evaluator
from dashboard_api.plan import Cover, ReadPlan, Snapshot, plan_spans
from dashboard_api.requests import Span
from tally.core.spec import Metric, MetricSpec

RATE_DIGITS = 4  # rates as the contract shows them: 0.3695


@dataclass(frozen=True)
class RetentionRequest:
    cohort: Metric
    returning: Metric
    grain: Grain
    tz: ZoneInfo
    start: datetime
    end: datetime
    periods: int
    filters: dict[str, str] = field(default_factory=dict)
    bounds: bool = False
    covers: Mapping[str, Cover] = field(default_factory=dict)

    @property
    def cohort_buckets(self) -> list[tuple[datetime, datetime]]:
        return bucket_bounds(self.start, self.end, self.grain, self.tz)

    def period_buckets(self, cohort_start: datetime) -> list[tuple[datetime, datetime]]:
        """Buckets B+0 .. B+periods of the cohort starting at ``cohort_start``."""
        return buckets_from(cohort_start, self.periods + 1, self.grain, self.tz)


@dataclass(frozen=True)
class FunnelRequest:
    steps: tuple[Metric, ...]
    grain: Grain
    tz: ZoneInfo
    start: datetime
    end: datetime
    filters: dict[str, str] = field(default_factory=dict)
    bounds: bool = False
    covers: Mapping[str, Cover] = field(default_factory=dict)

    @property
    def buckets(self) -> list[tuple[datetime, datetime]]:
        return bucket_bounds(self.start, self.end, self.grain, self.tz)


def plan_retention(spec: MetricSpec, request: RetentionRequest, now: datetime) -> ReadPlan:
    """Sketches of the cohort metric over the cohort buckets, and of the returning one over every period.

    Periods that start after ``now`` are not read: nothing can be published there yet
    (:func:`retention` answers them null).
    """
    cohorts = request.cohort_buckets
    periods = {b for start, _ in cohorts for b in request.period_buckets(start) if b[0] < now} or {cohorts[0]}
    needed: dict[str, list[Span]] = {request.cohort.name: [Span(s, e) for s, e in cohorts]}
    needed.setdefault(request.returning.name, []).extend(Span(s, e) for s, e in sorted(periods))
    end = max(e for _, e in periods)
    return plan_spans(
        spec,
        needed,
        _slices(request.filters, request.covers),
        request.start,
        end,
        single_slice=False,
        covers=request.covers,
    )


def plan_funnel(spec: MetricSpec, request: FunnelRequest) -> ReadPlan:
    spans = [Span(s, e) for s, e in request.buckets]
    needed = {step.name: spans for step in request.steps}
    return plan_spans(
        spec,
        needed,
        _slices(request.filters, request.covers),
        request.start,
        request.end,
        single_slice=False,
        covers=request.covers,
    )


def _slices(filters: Mapping[str, str], covers: Mapping[str, Cover]) -> tuple[str, ...] | None:
    # Merging declared slices reads whole hashes: the covering set's fields are not known in advance.
    return None if covers else (slice_id(filters),)


def retention(
    spec: MetricSpec, request: RetentionRequest, plan: ReadPlan, snapshot: Snapshot, now: datetime
) -> list[dict[str, Any]]:
    """The ``cohorts`` list of a retention response (see the README, "Retention")."""
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz, plan.covers)
    slices = [slice_id(request.filters)]
    sketches: dict[tuple[str, datetime], Any] = {}

    def sketch(metric: Metric, span: Span) -> Any:
        key = (metric.name, span.start)
        if key not in sketches:
            sketches[key] = evaluator.combined_sketch(metric, span, slices)
        return sketches[key]

    # A period is read by up to periods + 1 cohorts: its flags are worked out once.
    flags: dict[tuple[str, datetime], tuple[bool, bool]] = {}

    def complete_and_revised(metric: Metric, span: Span) -> tuple[bool, bool]:
        key = (metric.name, span.start)
        if key not in flags:
            flags[key] = (evaluator.complete(metric, span, now), evaluator.revised(metric, span))
        return flags[key]

    cohorts = []
    for start, end in request.cohort_buckets:
        cohort_span = Span(start, end)
        cohort = sketch(request.cohort, cohort_span)
        size = None if cohort is None else round(merges.distinct_estimate(cohort))
        cohort_complete, cohort_revised = complete_and_revised(request.cohort, cohort_span)
        periods = []
        for offset, (period_start, period_end) in enumerate(request.period_buckets(start)):
            period_span = Span(period_start, period_end)
            returning = sketch(request.returning, period_span) if period_start < now else None
            common = None if cohort is None or returning is None else merges.intersection([cohort, returning])
            value = None if common is None else round(merges.distinct_estimate(common))
            period_complete, period_revised = complete_and_revised(request.returning, period_span)
            entry: dict[str, Any] = {
                "offset": offset,
                "start": _ts(period_start, request.tz),
                "value": value,
                "rate": _rate(value, size),
                "complete": cohort_complete and period_complete,
                "revised": cohort_revised or period_revised,
            }
            if request.bounds:
                entry.update(_bounds(common))
            periods.append(entry)
        cohort_entry: dict[str, Any] = {
            "start": _ts(start, request.tz),
            "size": size,
            "complete": cohort_complete,
            "periods": periods,
        }
        if request.bounds:
            cohort_entry.update(_bounds(cohort))
        cohorts.append(cohort_entry)
    return cohorts


def funnel(
    spec: MetricSpec, request: FunnelRequest, plan: ReadPlan, snapshot: Snapshot, now: datetime
) -> list[dict[str, Any]]:
    """The ``buckets`` list of a funnel response (see the README, "Funnels")."""
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz, plan.covers)
    slices = [slice_id(request.filters)]
    buckets = []
    for start, end in request.buckets:
        span = Span(start, end)
        sketches = [evaluator.combined_sketch(step, span, slices) for step in request.steps]
        computed = all(s is not None for s in sketches)
        steps: list[dict[str, Any]] = []
        common: Any = None
        for index, (step, sketch) in enumerate(zip(request.steps, sketches, strict=True)):
            if computed:
                common = sketch if index == 0 else merges.intersection([common, sketch])
            value = round(merges.distinct_estimate(common)) if computed else None
            first = steps[0]["value"] if steps else value
            previous = steps[-1]["value"] if steps else None
            entry: dict[str, Any] = {
                "metric": step.name,
                "value": value,
                "rate_from_previous": _rate(value, previous) if index else None,
                "rate_from_first": _rate(value, first),
            }
            if request.bounds:
                entry.update(_bounds(common if computed else None))
            steps.append(entry)
        complete = all(evaluator.complete(step, span, now) for step in request.steps)
        revised = any(evaluator.revised(step, span) for step in request.steps)
        buckets.append({"start": _ts(start, request.tz), "complete": complete, "revised": revised, "steps": steps})
    return buckets


def _rate(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, RATE_DIGITS)


def _bounds(sketch: Any) -> dict[str, float | None]:
    if sketch is None:
        return {"lower": None, "upper": None}
    lower, upper = merges.distinct_bounds(sketch)
    return {"lower": lower, "upper": upper}


def _ts(instant: datetime, tz: ZoneInfo) -> str:
    return format_ts(instant, tz)
