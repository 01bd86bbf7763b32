"""What the metric endpoints share: the range parameters, finding the metric, reading the snapshot.

Each turns a lookup or read failure into the API's stable error code
(:class:`dashboard_api.errors.ApiError`), so handlers stay straight-line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import redis
from fastapi import Query

from cache.keys import KeyLayout
from cache.tiers import hour_tier_start
from dashboard_api.errors import ApiError
from dashboard_api.plan import ReadPlan, Snapshot, point_spans
from dashboard_api.requests import SeriesRequest
from dashboard_api.store import BeyondHourTierError, CacheColdError, read_snapshot
from tally.core.layout import format_hour
from tally.core.settings import Settings
from tally.core.spec import Metric, MetricSpec

# The range of a metric read, as every endpoint over one documents it.
StartQuery = Annotated[str, Query(description="Inclusive ISO-8601 start; a date or a time without offset is in tz.")]
EndQuery = Annotated[str, Query(description="Exclusive ISO-8601 end; a date or a time without offset is in tz.")]


def known_metric(spec: MetricSpec, name: str) -> Metric:
    metric = spec.get(name)
    if metric is None:
        raise ApiError("unknown_metric", f"no metric named {name!r}; GET /v1/metrics lists them")
    return metric


def range_limits(settings: Settings) -> dict[str, int]:
    return {"hour": settings.max_hour_buckets, "day": settings.max_day_buckets}


def read_or_cold(client: redis.Redis, layout: KeyLayout, plan: ReadPlan) -> Snapshot:
    try:
        return read_snapshot(client, layout, plan)
    except CacheColdError as exc:
        raise ApiError("cache_cold", str(exc)) from None
    except BeyondHourTierError as exc:
        raise ApiError("beyond_hour_retention", str(exc)) from None


def check_hour_retention(query: SeriesRequest, settings: Settings, now: datetime) -> None:
    """Refuse hour-grain points reaching back beyond ``TALLY_HOUR_RETENTION_DAYS`` before now.

    Older hours live on only in their day aggregates (cache.tiers), so day, week and
    month grains still serve them.
    """
    oldest = hour_tier_start(now, settings.hour_retention_days)
    if oldest is None or query.grain != "hour":
        return
    first = min((span.start for span in point_spans(query)), default=query.start)
    if first < oldest:
        raise ApiError(
            "beyond_hour_retention",
            f"grain=hour is served for the last {settings.hour_retention_days} days (TALLY_HOUR_RETENTION_DAYS): "
            f"the oldest hour served is {format_hour(oldest)}, and this request reaches back to "
            f"{format_hour(first)}; use grain=day, week or month for older data",
        )
