"""What the metric endpoints share: the range parameters, finding the metric, reading the snapshot.

Each turns a lookup or read failure into the API's stable error code
(:class:`dashboard_api.errors.ApiError`), so handlers stay straight-line.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Query

from cache.keys import KeyLayout
from dashboard_api.errors import ApiError
from dashboard_api.plan import ReadPlan, Snapshot
from dashboard_api.store import CacheColdError, read_snapshot
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
