"""Week aggregates: which metrics have them, which days a week is, and how a reader checks one.

A weekly retention table over 13 cohorts reads 13 weeks of the cohort metric and
as many of the returning one; from day aggregates that is 7 theta sketches per week
to read from Redis and union at every request, most of its time. So each UTC ISO
week (Monday to Sunday) of a theta metric also has a *week aggregate*: the union of
its 7 day aggregates, rebuilt with them (:func:`cache.days.rebuild_days`).

Like a day hash, a week hash is a cache, never the source of truth. Its ``@days``
field (:data:`WEEK_DAYS_FIELD`) is a digest of the 7 days' builds texts it was made
from (:func:`week_days_text`); a reader computes the same digest from the day index
it reads anyway and uses the week only when they agree, its days otherwise. A week
is built only when all 7 of its days have a computed hour: the current week, or one
with a day never computed, is read by its days.

Only theta metrics get weeks: HLL unions are a register maximum (cheap to do at read
time, and the day tier's storage budget is spent), and a quantile's day aggregate is
already a resampling: resampling it again per week would add rank error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, timedelta

from tally.core.spec import Metric

DAYS_PER_WEEK = 7
# The field of a week hash naming the day builds it aggregates (not a slice: slice ids never start with "@").
WEEK_DAYS_FIELD = "@days"


def has_weeks(metric: Metric) -> bool:
    """Whether ``metric`` keeps week aggregates beside its day aggregates."""
    return metric.is_theta


def week_of(day: date) -> date:
    """The Monday starting ``day``'s ISO week (UTC days)."""
    return day - timedelta(days=day.weekday())


def week_days(monday: date) -> list[date]:
    """The 7 UTC days of the week starting on ``monday``."""
    return [monday + timedelta(days=i) for i in range(DAYS_PER_WEEK)]


def whole_weeks(days: Sequence[date]) -> tuple[list[date], list[date]]:
    """The Mondays of the whole weeks among consecutive ``days``, and the days outside them."""
    mondays: list[date] = []
    rest: list[date] = []
    index = 0
    while index < len(days):
        day = days[index]
        if day.weekday() == 0 and index + DAYS_PER_WEEK <= len(days):
            mondays.append(day)
            index += DAYS_PER_WEEK
        else:
            rest.append(day)
            index += 1
    return mondays, rest


def week_days_text(builds_texts: Sequence[str]) -> str:
    """The ``@days`` value of a week: a digest of its 7 days' builds texts (as ``{p}:days`` holds them)."""
    if len(builds_texts) != DAYS_PER_WEEK:
        raise ValueError(f"a week has {DAYS_PER_WEEK} days, got {len(builds_texts)} builds texts")
    return hashlib.sha256("|".join(builds_texts).encode()).hexdigest()[:24]
