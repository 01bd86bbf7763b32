"""Turning a metric request's raw query string into a validated :class:`SeriesRequest`.

The raw ``(name, value)`` pairs are checked here rather than by FastAPI alone,
because any parameter named after one of the metric's dimensions is a filter, and
the error codes (``bad_grain``, ``bad_range``, ``unknown_dimension`` ...) are
part of the API.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from dashboard_api.calendar import (
    Grain,
    bucket_count,
    first_fractional_offset,
    format_ts,
    is_aligned,
    local_midnight,
    parse_zone,
)
from dashboard_api.csv_format import FORMATS, Representation, negotiate
from dashboard_api.errors import ApiError
from dashboard_api.requests import SeriesRequest, ValuesRequest
from tally.core.layout import format_hour
from tally.core.spec import API_PARAMETERS, Kind, Metric

# The spec refuses dimensions named like these (any other parameter of a request is a filter).
KNOWN_PARAMETERS: tuple[str, ...] = API_PARAMETERS
DEFAULT_GRAIN: Grain = "hour"
MAX_LIMIT = 100
MAX_WINDOWED_HOURS = 24 * 7
_WINDOW = re.compile(r"^([0-9]{1,3})d$")


def parse_series_query(metric: Metric, items: Sequence[tuple[str, str]], limits: Mapping[str, int]) -> SeriesRequest:
    """Validate a metric request; ``limits`` maps ``hour``/``day`` to the largest bucket counts."""
    params = single_valued(items)
    _reject_unknown(metric, params)
    grain = parse_grain(metric, params.get("grain", DEFAULT_GRAIN))
    tz = parse_tz(params.get("tz", "UTC"))
    start = parse_bound(params, "start", grain, tz)
    end = parse_bound(params, "end", grain, tz)
    window_days = parse_window(metric, params.get("window"))
    check_range(start, end, grain, limits)
    if window_days and grain == "hour" and bucket_count(start, end, grain) > MAX_WINDOWED_HOURS:
        # Each hourly window unions its own sketches; bound the work a request can ask for.
        raise ApiError(
            "range_too_large", f"with window, grain=hour serves at most {MAX_WINDOWED_HOURS} buckets; use grain=day"
        )
    check_whole_hours(tz, start, end, window_days)
    filters = {name: value for name, value in params.items() if name in metric.dimensions}
    for name, value in filters.items():
        if not value:
            raise ApiError("bad_parameter", f"filter {name!r} is empty; give a value")
    group_by = parse_group_by(metric, params.get("group_by"), filters)
    limit = parse_limit(params.get("limit"), group_by)
    q = parse_q(metric, params.get("q"))
    bounds = parse_bounds(metric, params.get("bounds"))
    return SeriesRequest(
        metric=metric,
        grain=grain,
        tz=tz,
        start=start,
        end=end,
        filters=filters,
        group_by=group_by,
        limit=limit,
        window_days=window_days,
        q=q,
        bounds=bounds,
    )


FORMAT_PARAMETER = "format"


def split_format(items: Sequence[tuple[str, str]], accept: str | None) -> tuple[Representation, list[tuple[str, str]]]:
    """``format`` (else ``Accept``): the series route's representation, and the request's other parameters.

    ``format`` is read here, apart from :func:`parse_series_query`, because only
    ``GET /v1/metrics/{name}`` has a CSV form: on any other endpoint it stays unknown.
    """
    given = [value for name, value in items if name == FORMAT_PARAMETER]
    if len(given) > 1:
        raise ApiError("bad_parameter", f"parameter {FORMAT_PARAMETER!r} is given more than once")
    representation = negotiate(given[0] if given else None, accept)
    if representation is None:
        raise ApiError("bad_parameter", f"format: {given[0]!r} must be one of {', '.join(FORMATS)}")
    return representation, [(name, value) for name, value in items if name != FORMAT_PARAMETER]


def parse_q(metric: Metric, text: str | None) -> float | None:
    """``q``: the quantile of a quantile metric, strictly between 0 and 1; None for other metrics."""
    if text is not None and metric.kind is not Kind.QUANTILE:
        raise ApiError("bad_parameter", f"q: metric {metric.name!r} is a {metric.kind.value}, not a quantile")
    if metric.kind is not Kind.QUANTILE:
        return None
    if text is None:
        return metric.q
    try:
        q = float(text)
    except ValueError:
        q = math.nan
    if not 0 < q < 1:  # NaN fails too
        raise ApiError("bad_quantile", f"q: {text!r} must be a number strictly between 0 and 1 (e.g. 0.95)")
    return q


def parse_flag(name: str, text: str | None) -> bool:
    """A true/false parameter (absent is false)."""
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise ApiError("bad_parameter", f"{name}: {text!r} must be true or false")


def parse_bounds(metric: Metric, text: str | None) -> bool:
    """``bounds=true``: lower and upper on each point, for distinct counts (estimates) only."""
    bounds = parse_flag("bounds", text)
    if bounds and not metric.is_distinct:
        raise ApiError(
            "bad_parameter",
            f"bounds: metric {metric.name!r} is a {metric.kind.value}; only count_distinct metrics are estimates "
            "with error bounds",
        )
    return bounds


VALUES_PARAMETERS = ("start", "end", "tz")


def parse_values_query(
    metric: Metric, dimension: str, items: Sequence[tuple[str, str]], limits: Mapping[str, int]
) -> ValuesRequest:
    """Validate a dimension-values request: ``start`` and ``end`` (whole hours, or dates in ``tz``), ``tz``."""
    params = single_valued(items)
    for name in params:
        if name not in VALUES_PARAMETERS:
            raise ApiError(
                "bad_parameter", f"unknown parameter {name!r}; this endpoint takes {', '.join(VALUES_PARAMETERS)}"
            )
    if dimension not in metric.dimensions:
        known = ", ".join(metric.dimensions) or "none"
        raise ApiError(
            "unknown_dimension", f"{dimension!r} is not a dimension of metric {metric.name!r} (its dimensions: {known})"
        )
    tz = parse_tz(params.get("tz", "UTC"))
    start, end = parse_instant(params, "start", tz), parse_instant(params, "end", tz)
    # The zone first: a date in a zone such as Asia/Kolkata is no whole UTC hour, and that is why.
    check_whole_hours(tz, start, end, None)
    check_aligned(params["start"], "start", start, "hour", tz)
    check_aligned(params["end"], "end", end, "hour", tz)
    # One span over the range: its cost grows with its days, so the day limit bounds it.
    check_range(start, end, "day", limits)
    return ValuesRequest(metric=metric, dimension=dimension, tz=tz, start=start, end=end)


def single_valued(items: Sequence[tuple[str, str]]) -> dict[str, str]:
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


def parse_tz(text: str) -> ZoneInfo:
    try:
        return parse_zone(text)
    except ValueError as exc:
        raise ApiError("bad_timezone", f"tz: {exc}") from None


def parse_bound(params: Mapping[str, str], name: str, grain: Grain, tz: ZoneInfo) -> datetime:
    """Parse ``start``/``end``: ISO-8601; a date or a time without offset is local to ``tz``."""
    instant = parse_instant(params, name, tz)
    check_aligned(params[name], name, instant, grain, tz)
    return instant


def parse_instant(params: Mapping[str, str], name: str, tz: ZoneInfo) -> datetime:
    """``start``/``end`` as an instant, whatever its alignment."""
    text = params.get(name)
    if text is None:
        raise ApiError("bad_parameter", f"query parameter {name!r} is required")
    try:
        return parse_local_instant(_restore_plus(text), tz)
    except (OverflowError, ValueError):
        raise ApiError(
            "bad_parameter",
            f"query parameter {name!r}: {text!r} is not an ISO-8601 date or time "
            "(e.g. 2026-11-27 or 2026-11-27T10:00:00Z)",
        ) from None


def check_aligned(text: str, name: str, instant: datetime, grain: Grain, tz: ZoneInfo) -> None:
    if not is_aligned(instant, grain, tz):
        boundary = {
            "hour": "a whole hour",
            "day": f"a midnight in {tz.key}",
            "week": f"a Monday midnight in {tz.key}",
            "month": f"the first of a month, midnight in {tz.key}",
        }[grain]
        raise ApiError("bad_range", f"{name} {text!r} is not {boundary}; grain={grain} buckets start there")


def parse_local_instant(text: str, tz: ZoneInfo) -> datetime:
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    value = datetime.fromisoformat(cleaned)
    if value.tzinfo is None:
        if len(cleaned) == 10:  # a date: its first instant in tz
            return local_midnight(value.date(), tz)
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _restore_plus(text: str) -> str:
    # An unencoded "+00:00" offset arrives as " 00:00" (a "+" in a query string is a space).
    if len(text) > 6 and text[-6] == " " and text[-5:-3].isdigit() and text[-3] == ":" and text[-2:].isdigit():
        return f"{text[:-6]}+{text[-5:]}"
    return text


def parse_window(metric: Metric, text: str | None) -> int | None:
    if text is None:
        return None
    match = _WINDOW.match(text)
    if not metric.max_window_days:
        raise ApiError("bad_window", f"window: metric {metric.name!r} does not take a window")
    if not match or not 1 <= int(match.group(1)) <= metric.max_window_days:
        raise ApiError(
            "bad_window", f"window: {text!r} must be <N>d with N from 1 to {metric.max_window_days} (e.g. 7d)"
        )
    return int(match.group(1))


def check_range(start: datetime, end: datetime, grain: Grain, limits: Mapping[str, int]) -> None:
    if end <= start:
        raise ApiError("bad_range", f"end {format_hour(end)} must be after start {format_hour(start)}")
    if grain == "hour":
        count, most = bucket_count(start, end, grain), limits["hour"]
    else:
        count, most = (end - start).days, limits["day"]
    if count > most:
        unit = "hour buckets" if grain == "hour" else "days"
        raise ApiError("range_too_large", f"the range spans {count} {unit}; at most {most} are served per request")


def check_whole_hours(tz: ZoneInfo, start: datetime, end: datetime, window_days: int | None) -> None:
    """Refuse a zone that is a fractional number of hours from UTC anywhere the request reads.

    The instant named is inside [start, end) when there is one; else it lies in
    the days a rolling window reads before ``start``, and the message says so.
    """
    bad, where = first_fractional_offset(tz, start, end), ""
    if bad is None and window_days:
        bad = first_fractional_offset(tz, start - timedelta(days=window_days + 1), start)
        where = f" (before start: the {window_days}d window reads back there)"
    if bad is not None:
        offset = bad.astimezone(tz).utcoffset()
        raise ApiError(
            "unsupported_timezone",
            f"tz: {tz.key} is UTC{_offset_text(offset)} at {format_ts(bad, tz)} ({format_hour(bad)}){where}, "
            "not a whole number of hours from UTC; Tally's base grain is the UTC hour, "
            "so its buckets cannot start at that zone's midnights",
        )


def _offset_text(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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


def parse_limit(text: str | None, group_by: str | None) -> int | None:
    if text is None:
        return None
    if group_by is None:
        raise ApiError("bad_parameter", "limit: only with group_by (the N largest series plus 'other')")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError("bad_parameter", f"limit: {text!r} must be an integer from 1 to {MAX_LIMIT}")
    return int(text)
