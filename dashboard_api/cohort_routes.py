"""``GET /v1/retention`` (cohort tables) and ``GET /v1/funnel`` (step conversion), from theta sketches.

Thin like the series handlers: validate (:mod:`dashboard_api.cohort_params`),
plan and read (:mod:`dashboard_api.cohorts`, :mod:`dashboard_api.store`),
compute (:mod:`dashboard_api.cohorts`), answer with the same ETag and
Cache-Control rules as series.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from dashboard_api.cohort_params import parse_funnel_query, parse_retention_query
from dashboard_api.cohorts import funnel, plan_funnel, plan_retention, retention
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.http_cache import caching_headers, not_modified
from dashboard_api.models import FunnelResponse, RetentionResponse
from dashboard_api.route_helpers import EndQuery, StartQuery, range_limits, read_or_cold

TzQuery = Annotated[str, Query(description="IANA time zone of the buckets, e.g. America/New_York.")]
BoundsQuery = Annotated[
    str | None,
    Query(
        description="true: each value carries lower and upper, its about-95% interval from the theta sketch "
        "(an intersection's interval widens as it shrinks).",
        json_schema_extra={"enum": ["true", "false"]},
    ),
]


def retention_table(
    request: Request,
    spec: SpecDep,
    settings: SettingsDep,
    client: RedisDep,
    layout: LayoutDep,
    cohort: Annotated[str, Query(description="A theta count_distinct metric: who is in the cohort during B.")],
    returning: Annotated[str, Query(description="A theta count_distinct metric over the same ids: who came back.")],
    start: StartQuery,
    end: EndQuery,
    grain: Annotated[
        str, Query(description="Cohort and period size.", json_schema_extra={"enum": ["day", "week", "month"]})
    ] = "day",
    periods: Annotated[
        str | None, Query(description="N: offsets 0..N per cohort (default 4; day up to 90, week 52, month 24).")
    ] = None,
    tz: TzQuery = "UTC",
    bounds: BoundsQuery = None,
) -> RetentionResponse | Response:
    query = parse_retention_query(spec, request.query_params.multi_items(), range_limits(settings))
    now = datetime.now(UTC)
    plan = plan_retention(spec, query, now)
    snapshot = read_or_cold(client, layout, plan)
    headers = caching_headers(request, snapshot.version, snapshot.as_of, now, settings.publish_lag_seconds)
    if not_modified(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = RetentionResponse.model_validate(
        {
            "cohort": query.cohort.name,
            "returning": query.returning.name,
            "grain": query.grain,
            "tz": query.tz.key,
            "periods": query.periods,
            "cohorts": retention(spec, query, plan, snapshot, now),
            "build": snapshot.version,
            "as_of": snapshot.as_of,
        }
    )
    document = body.model_dump(mode="json")
    if not query.bounds:
        for entry in document["cohorts"]:
            _drop_bounds(entry)
            for period in entry["periods"]:
                _drop_bounds(period)
    return JSONResponse(document, headers=headers)


def funnel_table(
    request: Request,
    spec: SpecDep,
    settings: SettingsDep,
    client: RedisDep,
    layout: LayoutDep,
    steps: Annotated[str, Query(description="2 to 8 theta count_distinct metrics over the same ids, comma-separated.")],
    start: StartQuery,
    end: EndQuery,
    grain: Annotated[
        str, Query(description="Bucket size.", json_schema_extra={"enum": ["hour", "day", "week", "month"]})
    ] = "day",
    tz: TzQuery = "UTC",
    bounds: BoundsQuery = None,
) -> FunnelResponse | Response:
    query = parse_funnel_query(spec, request.query_params.multi_items(), range_limits(settings))
    plan = plan_funnel(spec, query)
    snapshot = read_or_cold(client, layout, plan)
    now = datetime.now(UTC)
    headers = caching_headers(request, snapshot.version, snapshot.as_of, now, settings.publish_lag_seconds)
    if not_modified(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = FunnelResponse.model_validate(
        {
            "steps": [step.name for step in query.steps],
            "grain": query.grain,
            "tz": query.tz.key,
            "buckets": funnel(spec, query, plan, snapshot, now),
            "build": snapshot.version,
            "as_of": snapshot.as_of,
        }
    )
    document = body.model_dump(mode="json")
    if not query.bounds:
        for bucket in document["buckets"]:
            for step in bucket["steps"]:
                _drop_bounds(step)
    return JSONResponse(document, headers=headers)


def _drop_bounds(entry: dict[str, Any]) -> None:
    """``lower``/``upper`` appear only when bounds were asked for."""
    del entry["lower"], entry["upper"]
