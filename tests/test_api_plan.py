"""Unit tests of dashboard_api.plan: spans split into days and hours, and the reads a request plans."""

from __future__ import annotations

from datetime import UTC, date, datetime

from dashboard_api import calendar as cal
from dashboard_api.plan import HashRead, plan_reads
from dashboard_api.requests import SeriesRequest, Span
from tests.support.api import SPEC, at


def test_span_splits_into_whole_days_and_edge_hours() -> None:
    days, hours = Span(at(26, 22), at(28, 2)).split()
    assert days == [date(2026, 11, 27)]
    assert hours == [at(26, 22), at(26, 23), at(28, 0), at(28, 1)]
    assert Span(at(27, 1), at(27, 3)).split() == ([], [at(27, 1), at(27, 2)])


def test_plan_reads_follows_kind_grain_and_windows() -> None:
    def request(metric: str, grain: str, end: datetime, **extra: object) -> SeriesRequest:
        return SeriesRequest(metric=SPEC.get(metric), grain=grain, tz=cal.UTC_ZONE, start=at(27, 0), end=end, **extra)

    aov = plan_reads(SPEC, request("avg_order_value", "day", at(28, 0)))
    assert set(aov.hours) == {HashRead("revenue", "values"), HashRead("orders", "values")}
    assert aov.days[HashRead("revenue", "values")] == {date(2026, 11, 27)}
    hourly = plan_reads(SPEC, request("conversion_rate", "hour", at(27, 3)))
    assert set(hourly.hours) == {HashRead("purchasers", "values"), HashRead("active_users", "values")}
    assert hourly.slices == ("_",)
    daily = plan_reads(SPEC, request("conversion_rate", "day", at(28, 0)))
    assert set(daily.days) == {HashRead("purchasers", "sketches"), HashRead("active_users", "sketches")}
    windowed = plan_reads(SPEC, request("active_users", "day", at(28, 0), window_days=7))
    assert windowed.start == at(21, 0) and len(windowed.days[HashRead("active_users", "sketches")]) == 7
    sticky = plan_reads(SPEC, request("stickiness", "day", at(28, 0)))
    assert sticky.start == datetime(2026, 10, 29, tzinfo=UTC)  # the 30-day denominator
    grouped = plan_reads(SPEC, request("revenue", "hour", at(27, 2), group_by="country", limit=2))
    assert grouped.slices is None
