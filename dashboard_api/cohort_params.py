"""Validating ``/v1/retention`` and ``/v1/funnel`` query strings into their requests.

Shared rules with series (:mod:`dashboard_api.params`): grains, zones, aligned
bounds, range limits, whole-hour offsets, and any other parameter being a
dimension filter. Their own: every metric named is a theta ``count_distinct``
(``incompatible_metric``) counting the same ids (``mixed_id_spaces``: the
same ``field``), a filter is a dimension of every one of them, and
``periods`` / ``steps`` stay in range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dashboard_api.calendar import Grain, bucket_bounds, buckets_from
from dashboard_api.cohorts import FunnelRequest, RetentionRequest
from dashboard_api.errors import ApiError
from dashboard_api.params import (
    check_range,
    check_whole_hours,
    parse_bound,
    parse_flag,
    parse_tz,
    single_valued,
)
from dashboard_api.plan import Cover, slice_covers
from dashboard_api.route_helpers import known_metric
from tally.core.spec import Metric, MetricSpec

RETENTION_PARAMETERS = ("cohort", "returning", "grain", "start", "end", "periods", "tz", "bounds")
FUNNEL_PARAMETERS = ("steps", "grain", "start", "end", "tz", "bounds")
RETENTION_GRAINS: tuple[Grain, ...] = ("day", "week", "month")
FUNNEL_GRAINS: tuple[Grain, ...] = ("hour", "day", "week", "month")
# Largest ``periods`` per grain: a quarter of days, a year of weeks, two years of months.
MAX_PERIODS: Mapping[str, int] = {"day": 90, "week": 52, "month": 24}
DEFAULT_PERIODS = 4
# Intersections one retention request may ask for (cohorts x (periods + 1)).
MAX_RETENTION_CELLS = 5000
MIN_STEPS, MAX_STEPS = 2, 8


def parse_retention_query(
    spec: MetricSpec, items: Sequence[tuple[str, str]], limits: Mapping[str, int]
) -> RetentionRequest:
    params = single_valued(items)
    for name in ("cohort", "returning"):
        if not params.get(name):
            raise ApiError("bad_parameter", f"query parameter {name!r} is required: a theta count_distinct metric")
    cohort = _theta_metric(spec, params["cohort"], "cohort")
    returning = _theta_metric(spec, params["returning"], "returning")
    metrics = [cohort, returning]
    _same_ids(metrics, "cohort and returning")
    grain = _grain(params.get("grain", "day"), RETENTION_GRAINS, metrics)
    tz = parse_tz(params.get("tz", "UTC"))
    start, end = parse_bound(params, "start", grain, tz), parse_bound(params, "end", grain, tz)
    periods = _periods(params.get("periods"), grain)
    check_range(start, end, grain, limits)
    cohorts = len(bucket_bounds(start, end, grain, tz))
    if cohorts * (periods + 1) > MAX_RETENTION_CELLS:
        raise ApiError(
            "range_too_large",
            f"{cohorts} cohorts x {periods + 1} periods is {cohorts * (periods + 1)} cells; "
            f"at most {MAX_RETENTION_CELLS} are served per request",
        )
    read_end = buckets_from(end, periods, grain, tz)[-1][1] if periods else end
    check_range(start, read_end, grain, limits)  # the periods read beyond end count too
    check_whole_hours(tz, start, read_end, None)
    filters = _filters(params, RETENTION_PARAMETERS, metrics)
    return RetentionRequest(
        cohort=cohort,
        returning=returning,
        grain=grain,
        tz=tz,
        start=start,
        end=end,
        periods=periods,
        filters=filters,
        bounds=parse_flag("bounds", params.get("bounds")),
        covers=_covers(spec, metrics, filters),
    )


def parse_funnel_query(spec: MetricSpec, items: Sequence[tuple[str, str]], limits: Mapping[str, int]) -> FunnelRequest:
    params = single_valued(items)
    names = [name.strip() for name in params.get("steps", "").split(",") if name.strip()]
    if not MIN_STEPS <= len(names) <= MAX_STEPS:
        raise ApiError(
            "bad_parameter",
            f"steps: give {MIN_STEPS} to {MAX_STEPS} theta count_distinct metrics, comma-separated (got {len(names)})",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ApiError("bad_parameter", f"steps: {repeated[0]!r} is named more than once")
    steps = [_theta_metric(spec, name, "steps") for name in names]
    _same_ids(steps, "the steps")
    grain = _grain(params.get("grain", "day"), FUNNEL_GRAINS, steps)
    tz = parse_tz(params.get("tz", "UTC"))
    start, end = parse_bound(params, "start", grain, tz), parse_bound(params, "end", grain, tz)
    check_range(start, end, grain, limits)
    check_whole_hours(tz, start, end, None)
    filters = _filters(params, FUNNEL_PARAMETERS, steps)
    return FunnelRequest(
        steps=tuple(steps),
        grain=grain,
        tz=tz,
        start=start,
        end=end,
        filters=filters,
        bounds=parse_flag("bounds", params.get("bounds")),
        covers=_covers(spec, steps, filters),
    )


def _theta_metric(spec: MetricSpec, name: str, parameter: str) -> Metric:
    metric = known_metric(spec, name)
    if not metric.is_theta:
        what = f"a count_distinct with an {metric.sketch.upper()} sketch" if metric.is_distinct else f"a {metric.kind}"
        raise ApiError(
            "incompatible_metric",
            f"{parameter}: metric {name!r} is {what}; set operations need a count_distinct with sketch: theta",
        )
    return metric


def _same_ids(metrics: Sequence[Metric], what: str) -> None:
    """Intersections only mean something between sets of the same ids: the metrics count the same field."""
    fields = {m.field for m in metrics}
    if len(fields) > 1:
        counted = ", ".join(f"{m.name} counts {m.field!r}" for m in metrics)
        raise ApiError("mixed_id_spaces", f"{what} must count the same ids (the same field): {counted}")


def _grain(text: str, allowed: Sequence[Grain], metrics: Sequence[Metric]) -> Grain:
    served = [g for g in allowed if all(g in m.grains for m in metrics)]
    if text not in served:
        raise ApiError("bad_grain", f"grain {text!r} is not served here; use one of {', '.join(served) or 'none'}")
    return next(g for g in served if g == text)  # typed as a Grain


def _periods(text: str | None, grain: Grain) -> int:
    if text is None:
        return DEFAULT_PERIODS
    most = MAX_PERIODS[grain]
    if not text.isdigit() or not 0 <= int(text) <= most:
        raise ApiError("bad_parameter", f"periods: {text!r} must be an integer from 0 to {most} at grain={grain}")
    return int(text)


def _filters(params: Mapping[str, str], known: Sequence[str], metrics: Sequence[Metric]) -> dict[str, str]:
    """Every other parameter is a filter on a dimension all the metrics have."""
    shared = [d for d in metrics[0].dimensions if all(d in m.dimensions for m in metrics[1:])]
    filters = {}
    for name, value in params.items():
        if name in known:
            continue
        if name not in shared:
            raise ApiError(
                "unknown_dimension",
                f"{name!r} is neither a parameter ({', '.join(known)}) nor a dimension every metric here has "
                f"({', '.join(shared) or 'none'})",
            )
        if not value:
            raise ApiError("bad_parameter", f"filter {name!r} is empty; give a value")
        filters[name] = value
    return filters


def _covers(spec: MetricSpec, metrics: Sequence[Metric], filters: Mapping[str, str]) -> dict[str, Cover]:
    covers: dict[str, Cover] = {}
    for metric in metrics:
        covers.update(slice_covers(spec, metric, set(filters)))
    return covers
