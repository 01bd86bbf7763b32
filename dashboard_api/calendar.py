"""Local calendars on top of UTC hours: buckets, alignment, windows, timestamps.

Tally stores whole UTC hours, so a bucket of any zone is the set of UTC hours
between two local boundaries. That works wherever the zone's offset is a whole
number of hours; :func:`first_fractional_offset` finds where it is not.
All functions are pure; instants are timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tally.core.layout import ONE_HOUR, floor_hour

Grain = Literal["hour", "day", "week", "month"]
UTC_ZONE = ZoneInfo("UTC")


def parse_zone(name: str) -> ZoneInfo:
    """An IANA zone; ValueError for anything else (including path tricks)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) of a local calendar day.

    Where midnight does not exist (a DST jump at 00:00), ``fold=0`` applies the
    earlier offset, which lands on the first instant that does exist.
    """
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _period_start(day: date, grain: Grain) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if grain == "month":
        return day.replace(day=1)
    return day


def _next_period(day: date, grain: Grain) -> date:
    if grain == "day":
        return day + timedelta(days=1)
    if grain == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def is_aligned(instant: datetime, grain: Grain, tz: ZoneInfo) -> bool:
    """Whether ``instant`` starts a bucket of ``grain`` in ``tz``."""
    if grain == "hour":
        return instant == floor_hour(instant)
    local_day = instant.astimezone(tz).date()
    return _period_start(local_day, grain) == local_day and local_midnight(local_day, tz) == instant


def bucket_bounds(start: datetime, end: datetime, grain: Grain, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """[start, end) split into buckets: (UTC start, UTC end) pairs, in order."""
    if grain == "hour":
        hours = utc_hours(start, end)
        return [(h, h + ONE_HOUR) for h in hours]
    bounds = []
    day = start.astimezone(tz).date()
    while (bucket_start := local_midnight(day, tz)) < end:
        day = _next_period(day, grain)
        bounds.append((bucket_start, min(local_midnight(day, tz), end)))
    return bounds


def buckets_from(start: datetime, count: int, grain: Grain, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The ``count`` consecutive buckets of ``grain`` in ``tz`` from ``start`` (a bucket start)."""
    if grain == "hour":
        return [(start + i * ONE_HOUR, start + (i + 1) * ONE_HOUR) for i in range(count)]
    bounds = []
    day = start.astimezone(tz).date()
    for _ in range(count):
        following = _next_period(day, grain)
        bounds.append((local_midnight(day, tz), local_midnight(following, tz)))
        day = following
    return bounds


def bucket_count(start: datetime, end: datetime, grain: Grain) -> int:
    """An upper bound of the buckets in [start, end), cheap enough to check first."""
    span = end - start
    per = {"hour": ONE_HOUR, "day": timedelta(hours=23), "week": timedelta(days=7) - ONE_HOUR}
    if grain == "month":
        return span.days // 28 + 1
    return int(span / per[grain]) + 1


def utc_hours(start: datetime, end: datetime) -> list[datetime]:
    """Every whole UTC hour in [start, end) (:func:`tally.core.layout.hours_between`, as a list).

    Counted, not stepped through with a comparison per hour: a 168-point read
    lists hours about 500 times, and the generator was a tenth of its time.
    """
    if start.tzinfo is UTC and not (start.minute or start.second or start.microsecond):
        first = start  # the usual case (a span's own start): no conversion
    else:
        first = floor_hour(start)
        if first < start:
            first += ONE_HOUR
    count = -((first - end) // ONE_HOUR)  # whole hours from first up to (not including) end
    if count == 1:  # an hourly point's span
        return [first]
    return [first + i * ONE_HOUR for i in range(count)]


def days_back(instant: datetime, days: int, tz: ZoneInfo) -> datetime:
    """The same local wall-clock time ``days`` calendar days earlier, as a whole UTC hour."""
    wall = instant.astimezone(tz).replace(tzinfo=None) - timedelta(days=days)
    return floor_hour(wall.replace(tzinfo=tz).astimezone(UTC))


def first_fractional_offset(tz: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The first sampled UTC hour in [start, end) where ``tz`` is not a whole number of hours from UTC.

    Offsets are sampled every 3 hours: no zone keeps a fractional offset for less
    than that, and a per-hour scan of a long range would cost more than the query.
    """
    if tz.key == "UTC":
        return None
    for hour in [*utc_hours(start, end)[::3], floor_hour(end - timedelta(microseconds=1))]:
        offset = hour.astimezone(tz).utcoffset()
        if offset is not None and offset % ONE_HOUR:
            return hour
    return None


def format_ts(instant: datetime, tz: ZoneInfo) -> str:
    """``2026-11-27T10:00:00Z`` in UTC; the local time with its offset elsewhere."""
    if tz.key == "UTC":
        # isoformat, not strftime: this runs for every point, and strftime was a twentieth of a 168-point answer.
        utc = instant if instant.tzinfo is UTC else instant.astimezone(UTC)
        return utc.isoformat(timespec="seconds")[:-6] + "Z"
    return instant.astimezone(tz).isoformat()
