"""The validated requests the API answers, and the span of hours a point covers.

:mod:`dashboard_api.params` builds these from a raw query string; everything
after it (planning, evaluation, presentation) takes them as plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

from dashboard_api.calendar import Grain, bucket_bounds, days_back, utc_hours
from tally.core.spec import Metric

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Span:
    """A half-open range of whole UTC hours."""

    start: datetime
    end: datetime

    def split(self) -> tuple[list[date], list[datetime]]:
        """The whole UTC days inside the span, and the hours outside them."""
        if self.end - self.start < ONE_DAY:  # no whole day fits (an hour's point: the usual case)
            return [], utc_hours(self.start, self.end)
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
    q: float | None = None  # a quantile metric's q (the request's, else the spec's)
    bounds: bool = False  # lower and upper on each point (distinct counts)

    @cached_property
    def buckets(self) -> list[tuple[datetime, datetime]]:
        # Cached: planning, the hour tier check and the series each ask (never modified).
        return bucket_bounds(self.start, self.end, self.grain, self.tz)

    @cached_property
    def spans(self) -> list[Span]:
        """One span per bucket: the bucket itself, or the window ending at its end (never modified)."""
        if not self.window_days:
            return [Span(start, end) for start, end in self.buckets]
        return [Span(days_back(end, self.window_days, self.tz), end) for _, end in self.buckets]


@dataclass(frozen=True)
class ValuesRequest:
    """A validated request for the values a dimension took over a range."""

    metric: Metric
    dimension: str
    tz: ZoneInfo
    start: datetime
    end: datetime
