"""Unit tests of dashboard_api.calendar: alignment, buckets in local calendars, fractional offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dashboard_api import calendar as cal
from tests.support.api import at

NY = ZoneInfo("America/New_York")


def test_is_aligned() -> None:
    assert cal.is_aligned(at(27, 10), "hour", cal.UTC_ZONE)
    assert not cal.is_aligned(at(27, 10) + timedelta(minutes=1), "hour", cal.UTC_ZONE)
    assert cal.is_aligned(at(27, 0), "day", cal.UTC_ZONE)
    assert not cal.is_aligned(at(27, 10), "day", cal.UTC_ZONE)
    assert cal.is_aligned(at(27, 5), "day", NY) and not cal.is_aligned(at(27, 0), "day", NY)
    assert cal.is_aligned(datetime(2026, 11, 23, tzinfo=UTC), "week", cal.UTC_ZONE)  # a Monday
    assert not cal.is_aligned(datetime(2026, 11, 24, tzinfo=UTC), "week", cal.UTC_ZONE)
    assert cal.is_aligned(datetime(2026, 11, 1, tzinfo=UTC), "month", cal.UTC_ZONE)


def test_buckets_follow_the_local_calendar() -> None:
    hours = cal.bucket_bounds(at(27, 22), at(28, 1), "hour", cal.UTC_ZONE)
    assert [start for start, _ in hours] == [at(27, 22), at(27, 23), at(28, 0)]
    days = cal.bucket_bounds(at(27, 0), at(29, 0), "day", cal.UTC_ZONE)
    assert days == [(at(27, 0), at(28, 0)), (at(28, 0), at(29, 0))]
    # New York's spring-forward day has 23 hours, its fall-back day 25.
    spring = cal.bucket_bounds(datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC), "day", NY)
    assert [(end - start).total_seconds() / 3600 for start, end in spring] == [23]
    fall = cal.bucket_bounds(datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC), "day", NY)
    assert [(end - start).total_seconds() / 3600 for start, end in fall] == [25]
    months = cal.bucket_bounds(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "month", cal.UTC_ZONE
    )
    assert [end.date().isoformat() for _, end in months] == ["2026-02-01", "2026-03-01", "2026-04-01"]
    assert cal.format_ts(datetime(2026, 3, 8, 5, tzinfo=UTC), NY) == "2026-03-08T00:00:00-05:00"
    assert cal.format_ts(at(27, 5), cal.UTC_ZONE) == "2026-11-27T05:00:00Z"


def test_fractional_offsets_are_found() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    assert cal.first_fractional_offset(kolkata, at(27, 0), at(28, 0)) == at(27, 0)
    assert cal.first_fractional_offset(NY, at(27, 0), at(28, 0)) is None
