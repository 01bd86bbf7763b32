"""Turning a snapshot into what a response lists: series (grouped and ranked) and dimension values.

The values come from :class:`dashboard_api.evaluate.Evaluator`; which slices
exist comes from the hashes read (for a metric answered by merging, from the
fields of its covering stored set). Nothing here touches Redis or HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cache.keys import slice_id, slice_labels
from dashboard_api.evaluate import Evaluator
from dashboard_api.plan import Cover, HashRead, ReadPlan, Snapshot, part_span, point_spans, stored_parts
from dashboard_api.present import Number
from dashboard_api.requests import SeriesRequest, Span, ValuesRequest
from tally.core.spec import MetricSpec

# The label of the series that sums the group values beyond ``limit``.
OTHER = "other"


@dataclass(frozen=True)
class SeriesData:
    labels: dict[str, str]
    points: list[tuple[datetime, Number | None]]
    other: bool = False
    complete: list[bool] = field(default_factory=list)
    revised: list[bool] = field(default_factory=list)
    bounds: list[tuple[float, float] | None] | None = None  # with bounds=true: each point's (lower, upper)


def seen_slices(snapshot: Snapshot) -> set[str]:
    """Every slice id present in any fetched hash."""
    return {slice_text for _, data in snapshot.fetched() for slice_text in data}


def group_values(
    slice_texts: Iterable[str], filters: Mapping[str, str], group_by: str, stored: Collection[str] | None = None
) -> list[str]:
    """Sorted values of ``group_by`` among slices of exactly the filters plus ``group_by``.

    With ``stored`` (a covering set), among the slices of exactly that set instead.
    """
    wanted = set(stored) if stored is not None else set(filters) | {group_by}
    found: set[str] = set()
    for slice_text in slice_texts:
        if slice_text.startswith("@"):
            continue
        labels = slice_labels(slice_text)
        if labels.keys() == wanted and all(labels[d] == v for d, v in filters.items()):
            found.add(labels[group_by])
    return sorted(found)


def covered_values(
    snapshot: Snapshot,
    covers: Mapping[str, Cover],
    requested: Collection[str],
    filters: Mapping[str, str],
    group_by: str,
) -> list[str]:
    """:func:`group_values` over every fetched hash, each by the set its metric answers ``requested`` from.

    That is its covering set when it is merged, else ``requested`` itself (stored).
    """
    fields: dict[HashRead, set[str]] = {}
    for read, data in snapshot.fetched():
        fields.setdefault(read, set()).update(data)
    found: set[str] = set()
    for read, names in fields.items():
        cover = covers.get(read.metric)
        stored = cover.stored if cover is not None else requested
        found.update(group_values(names, filters, group_by, stored))
    return sorted(found)


def _group_values(
    snapshot: Snapshot, covers: Mapping[str, Cover], filters: Mapping[str, str], group_by: str
) -> list[str]:
    if not covers:  # every metric read stores the request's own slices
        return group_values(seen_slices(snapshot), filters, group_by)
    return covered_values(snapshot, covers, {*filters, group_by}, filters, group_by)


def ranked(evaluator: Evaluator, request: SeriesRequest, values: list[str]) -> tuple[list[str], list[str]]:
    """The ``limit`` largest group values by their total over the range, and the rest."""
    whole = Span(request.start, request.end)
    group_by = request.group_by
    if group_by is None:
        raise ValueError("ranking needs a group_by dimension")

    def total(value: str) -> float:
        result = evaluator.value(request.metric, whole, [slice_id({**request.filters, group_by: value})])
        return -math.inf if result is None else result

    order = sorted(values, key=lambda v: (-total(v), v))
    return order[: request.limit], order[request.limit :]


def build_series(
    spec: MetricSpec, request: SeriesRequest, plan: ReadPlan, snapshot: Snapshot, now: datetime | None = None
) -> list[SeriesData]:
    quantiles = {request.metric.name: request.q} if request.q is not None else {}
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz, plan.covers, quantiles)
    spans = point_spans(request)
    moment = now or datetime.now(UTC)
    complete = [evaluator.complete(request.metric, span, moment) for span in spans]
    revised = [evaluator.revised(request.metric, span) for span in spans]
    starts = [start for start, _ in request.buckets]
    targets: list[tuple[dict[str, str], list[str], bool]]
    if request.group_by is None:
        targets = [(dict(request.filters), [slice_id(request.filters)], False)]
    else:
        values = _group_values(snapshot, plan.covers, request.filters, request.group_by)
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
            bounds=evaluator.bounds_over(request.metric, spans, slices) if request.bounds else None,
        )
        for labels, slices, other in targets
    ]


def dimension_values(
    spec: MetricSpec, request: ValuesRequest, plan: ReadPlan, snapshot: Snapshot
) -> list[tuple[str, Number | None]]:
    """Each value of the dimension in a stored slice of the range (sorted), with the metric over the range.

    A ratio's figure is its denominator's: what the ratio is taken over (a value
    that only its numerator saw has 0).
    """
    evaluator = Evaluator(spec, snapshot, [*plan.hours, *plan.days], request.tz, plan.covers)
    counted, window = stored_parts(spec, request.metric)[-1]
    span = part_span(Span(request.start, request.end), window, request.tz)
    values = _group_values(snapshot, plan.covers, {}, request.dimension)
    return [(value, evaluator.value(counted, span, [slice_id({request.dimension: value})])) for value in values]


def seen_values(
    snapshot: Snapshot, dimensions: Iterable[str], plan: ReadPlan | None = None, requested: Collection[str] = ()
) -> dict[str, set[str]]:
    """Per dimension: the values it takes in the single-dimension slices of every fetched hash.

    When ``plan`` merges slices (whole hashes of ``requested``'s covering sets were
    read), the values its fields of those sets take instead.
    """
    if plan is not None and plan.covers:
        return {dim: set(covered_values(snapshot, plan.covers, requested, {}, dim)) for dim in dimensions}
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
