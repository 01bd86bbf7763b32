"""Local calendars over UTC hours: DST property tests and known transition days.

For additive metrics the sum over a zone's local buckets must equal the sum over
the UTC hours they cover; boundaries must be local midnights; 23- and 25-hour
days must appear exactly on the transition days (listed here from the zones'
published rules, not computed by the code under test).
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard_api import calendar as cal
from dashboard_api.plan import HashRead, Snapshot, plan_reads
from dashboard_api.requests import SeriesRequest
from dashboard_api.series import build_series
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec

SPEC = load_spec(DEFAULT_SPEC_PATH)
ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney"]
# Local days that are not 24 hours long, 2025-2027 (spring forward: 23 h, fall back: 25 h).
# Sydney is southern: it falls back in April and springs forward in October.
SHORT_AND_LONG_DAYS = {
    "America/New_York": {
        date(2025, 3, 9): 23,
        date(2025, 11, 2): 25,
        date(2026, 3, 8): 23,
        date(2026, 11, 1): 25,
        date(2027, 3, 14): 23,
        date(2027, 11, 7): 25,
    },
    "Europe/Berlin": {
        date(2025, 3, 30): 23,
        date(2025, 10, 26): 25,
        date(2026, 3, 29): 23,
        date(2026, 10, 25): 25,
        date(2027, 3, 28): 23,
        date(2027, 10, 31): 25,
    },
    "Australia/Sydney": {
        date(2025, 4, 6): 25,
        date(2025, 10, 5): 23,
        date(2026, 4, 5): 25,
        date(2026, 10, 4): 23,
        date(2027, 4, 4): 25,
        date(2027, 10, 3): 23,
    },
}
DAYS = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 10, 1))


def local_midnight(day: date, zone: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


@settings(max_examples=150, deadline=None)
@given(zone=st.sampled_from(ZONES), first=DAYS, days=st.integers(1, 75))
def test_day_buckets_are_local_midnights_and_have_the_right_length(zone, first, days):
    tz = ZoneInfo(zone)
    start, end = local_midnight(first, zone), local_midnight(first + timedelta(days=days), zone)
    buckets = cal.bucket_bounds(start, end, "day", tz)
    assert len(buckets) == days
    assert buckets[0][0] == start and buckets[-1][1] == end
    for (_a_start, a_end), (b_start, _) in itertools.pairwise(buckets):
        assert a_end == b_start
    for bucket_start, bucket_end in buckets:
        local = bucket_start.astimezone(tz)
        assert (local.hour, local.minute) == (0, 0)
        hours = (bucket_end - bucket_start) / timedelta(hours=1)
        assert hours == SHORT_AND_LONG_DAYS[zone].get(local.date(), 24)


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    first=DAYS,
    days=st.integers(1, 100),
    grain=st.sampled_from(["day", "week", "month"]),
    seed=st.integers(0, 2**32),
)
def test_additive_sum_over_local_buckets_equals_sum_over_their_utc_hours(zone, first, days, grain, seed):
    tz = ZoneInfo(zone)
    # Align the range to the grain in local time, as the API requires.
    if grain == "week":
        first -= timedelta(days=first.weekday())
    if grain == "month":
        first = first.replace(day=1)
    last = first + timedelta(days=days)
    if grain == "week":
        last += timedelta(days=(7 - last.weekday()) % 7)
    if grain == "month":
        last = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    start, end = local_midnight(first, zone), local_midnight(last, zone)
    rng = random.Random(seed)
    hours = cal.utc_hours(start, end)
    values = {h: float(rng.randint(0, 1000)) for h in hours if rng.random() < 0.9}  # some hours uncomputed
    read = HashRead("revenue", "values")
    snapshot = Snapshot(published_at=dict.fromkeys(values, "p"), hours={read: {h: {"_": v} for h, v in values.items()}})
    request = SeriesRequest(metric=SPEC.get("revenue"), grain=grain, tz=tz, start=start, end=end)
    [series] = build_series(SPEC, request, plan_reads(SPEC, request), snapshot)
    assert sum(v or 0 for _, v in series.points) == sum(values.values())
    for (bucket_start, bucket_end), (ts, value) in zip(request.buckets, series.points, strict=True):
        assert ts == bucket_start
        inside = [values[h] for h in cal.utc_hours(bucket_start, bucket_end) if h in values]
        assert value == (sum(inside) if inside else None)


def test_week_buckets_start_on_monday_and_months_on_the_first():
    tz = ZoneInfo("Europe/Berlin")
    start, end = local_midnight(date(2026, 3, 2), "Europe/Berlin"), local_midnight(date(2026, 4, 6), "Europe/Berlin")
    weeks = cal.bucket_bounds(start, end, "week", tz)
    assert [b.astimezone(tz).date().isoformat() for b, _ in weeks] == [
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
        "2026-03-23",
        "2026-03-30",
    ]
    assert (weeks[3][1] - weeks[3][0]) == timedelta(days=7, hours=-1)  # contains the spring-forward Sunday
    months = cal.bucket_bounds(
        local_midnight(date(2026, 1, 1), "Australia/Sydney"),
        local_midnight(date(2026, 5, 1), "Australia/Sydney"),
        "month",
        ZoneInfo("Australia/Sydney"),
    )
    assert [cal.format_ts(b, ZoneInfo("Australia/Sydney")) for b, _ in months] == [
        "2026-01-01T00:00:00+11:00",
        "2026-02-01T00:00:00+11:00",
        "2026-03-01T00:00:00+11:00",
        "2026-04-01T00:00:00+11:00",
    ]
    assert cal.format_ts(months[3][1], ZoneInfo("Australia/Sydney")) == "2026-05-01T00:00:00+10:00"


def test_rolling_window_start_is_n_local_days_back():
    ny = ZoneInfo("America/New_York")
    end = local_midnight(date(2026, 3, 10), "America/New_York")
    assert cal.days_back(end, 7, ny) == local_midnight(date(2026, 3, 3), "America/New_York")
    assert (end - cal.days_back(end, 7, ny)) == timedelta(days=7, hours=-1)  # across the short day
