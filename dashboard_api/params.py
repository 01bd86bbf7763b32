"""Turning a metric request's raw query string into a validated :class:`SeriesQuery`.

The raw ``(name, value)`` pairs are checked here rather than by FastAPI alone,
because any parameter named after one of the metric's dimensions is a filter, and
the error codes (``bad_grain``, ``bad_range``, ``unknown_dimension`` ...) are
part of the API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from dashboard_api.errors import ApiError
from dashboard_api.query import Grain, bucket_count, is_aligned
from tally.layout import HourError, format_hour, parse_instant
from tally.spec import Metric

KNOWN_PARAMETERS: tuple[str, ...] = ("grain", "start", "end", "group_by")
DEFAULT_GRAIN: Grain = "hour"


@dataclass(frozen=True)
class SeriesQuery:
    grain: Grain
    start: datetime
    end: datetime
    filters: dict[str, str]
    group_by: str | None


def parse_series_query(metric: Metric, items: Sequence[tuple[str, str]], max_buckets: Mapping[str, int]) -> SeriesQuery:
    """Validate a metric request; ``max_buckets`` maps each grain to its limit."""
    params = _single_valued(items)
    _reject_unknown(metric, params)
    grain = parse_grain(metric, params.get("grain", DEFAULT_GRAIN))
    start = parse_bound(params, "start", grain)
    end = parse_bound(params, "end", grain)
    check_range(start, end, grain, max_buckets[grain])
    filters = {name: value for name, value in params.items() if name in metric.dimensions}
    for name, value in filters.items():
        if not value:
            raise ApiError("bad_parameter", f"filter {name!r} is empty; give a value")
    group_by = parse_group_by(metric, params.get("group_by"), filters)
    return SeriesQuery(grain=grain, start=start, end=end, filters=filters, group_by=group_by)


def _single_valued(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    # A repeated parameter has no single meaning (OR? last wins?), so refuse it.
    counts = Counter(name for name, _ in items)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise ApiError("bad_parameter", f"parameter {repeated[0]!r} is given more than once")
    return dict(items)


def _reject_unknown(metric: Metric, params: Mapping[str, str]) -> None:
    for name in params:
        if name not in KNOWN_PARAMETERS and name not in metric.dimensions:
            raise ApiError("unknown_dimension", _not_a_dimension(metric, name))


def _not_a_dimension(metric: Metric, name: str) -> str:
    known = ", ".join(metric.dimensions) or "none"
    return (
        f"{name!r} is not a dimension of metric {metric.name!r} (its dimensions: {known}) "
        f"nor a parameter ({', '.join(KNOWN_PARAMETERS)})"
    )


def parse_grain(metric: Metric, text: str) -> Grain:
    if text not in metric.grains:
        raise ApiError(
            "bad_grain",
            f"grain {text!r} is not served for metric {metric.name!r}; use one of {', '.join(metric.grains)}",
        )
    return cast(Grain, text)


def parse_bound(params: Mapping[str, str], name: str, grain: Grain) -> datetime:
    """Parse ``start``/``end``: ISO-8601, naive means UTC, aligned to the grain."""
    text = params.get(name)
    if text is None:
        raise ApiError("bad_parameter", f"query parameter {name!r} is required")
    try:
        instant = parse_instant(_restore_plus(text), name=name)
    except (HourError, OverflowError, ValueError):
        raise ApiError(
            "bad_parameter",
            f"query parameter {name!r}: {text!r} is not an ISO-8601 date or time "
            "(e.g. 2026-11-27 or 2026-11-27T10:00:00Z)",
        ) from None
    if not is_aligned(instant, grain):
        boundary = "a whole UTC hour" if grain == "hour" else "a UTC midnight (a date)"
        raise ApiError("bad_range", f"{name} {text!r} is not {boundary}; grain={grain} buckets start there")
    return instant


def _restore_plus(text: str) -> str:
    # An unencoded "+00:00" offset arrives as " 00:00" (a "+" in a query string is a space).
    if len(text) > 6 and text[-6] == " " and text[-5:-3].isdigit() and text[-3] == ":" and text[-2:].isdigit():
        return f"{text[:-6]}+{text[-5:]}"
    return text


def check_range(start: datetime, end: datetime, grain: Grain, max_buckets: int) -> None:
    if end <= start:
        raise ApiError("bad_range", f"end {format_hour(end)} must be after start {format_hour(start)}")
    count = bucket_count(start, end, grain)
    if count > max_buckets:
        raise ApiError(
            "range_too_large",
            f"the range holds {count} {grain} buckets; at most {max_buckets} are served per request",
        )


def parse_group_by(metric: Metric, text: str | None, filters: Mapping[str, str]) -> str | None:
    if text is None:
        return None
    if not text:
        raise ApiError("bad_parameter", "group_by is empty; give a dimension")
    if text not in metric.dimensions:
        raise ApiError("unknown_dimension", f"group_by: {_not_a_dimension(metric, text)}")
    if text in filters:
        raise ApiError("bad_parameter", f"{text!r} is both a filter and group_by; use one")
    return text
