"""The HTTP endpoints: metric catalogue, metric series, health.

Handlers are thin: validate (:mod:`dashboard_api.params`), read
(:mod:`dashboard_api.store`), compute (:mod:`dashboard_api.query`), shape the
response (:mod:`dashboard_api.models`). They are plain ``def`` on purpose: the
Redis client is synchronous, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from cache.freshness import freshness_state
from cache.keys import KeyLayout, parse_published_at
from cache.reads import newest_computed_hours, read_meta, read_redefined, read_runs
from dashboard_api.calendar import UTC_ZONE, format_ts, utc_hours
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.errors import REDIS_DOWN_ERRORS, ApiError, error_response, redis_down_message
from dashboard_api.models import (
    DimensionValue,
    ErrorResponse,
    HealthResponse,
    HealthUnavailableResponse,
    MetricInfo,
    MetricsResponse,
    Point,
    ResponseWarning,
    Run,
    RunsResponse,
    Series,
    SeriesResponse,
    ValuesResponse,
)
from dashboard_api.params import check_range, parse_bound, parse_series_query, parse_values_query
from dashboard_api.query import (
    ReadPlan,
    SeriesData,
    SeriesRequest,
    Snapshot,
    ValuesRequest,
    build_series,
    dimension_values,
    plan_reads,
    plan_values,
    seen_values,
    slice_seen,
    unseen_filter_values,
)
from dashboard_api.store import CacheColdError, read_snapshot
from tally.core.layout import format_hour
from tally.core.runstats import current_names
from tally.core.settings import Settings
from tally.core.spec import GRAINS, Metric, MetricSpec

# Every error shares one body; "default" also stops FastAPI advertising a 422 we never send.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameters."},
    "default": {"model": ErrorResponse, "description": "Any other error, same body."},
}
# GET /v1/runs without a range: a day of hours.
NEWEST_RUNS = 24
SERIES_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorResponse, "description": "unknown_metric"},
    503: {"model": ErrorResponse, "description": "redis_unavailable"},
}


# The range of a metric read, as every endpoint over one documents it.
StartQuery = Annotated[str, Query(description="Inclusive ISO-8601 start; a date or a time without offset is in tz.")]
EndQuery = Annotated[str, Query(description="Exclusive ISO-8601 end; a date or a time without offset is in tz.")]


def build_router(spec: MetricSpec) -> APIRouter:
    """The routes; ``spec`` documents the dimension filters in OpenAPI."""
    router = APIRouter()
    router.add_api_route(
        "/v1/metrics",
        list_metrics,
        methods=["GET"],
        response_model=MetricsResponse,
        responses=ERROR_RESPONSES,
        summary="List the metrics",
    )
    router.add_api_route(
        "/v1/metrics/{name}",
        metric_series,
        methods=["GET"],
        response_model=SeriesResponse,
        responses=SERIES_RESPONSES,
        summary="One metric as time series",
        openapi_extra={"parameters": filter_parameters(spec)},
    )
    router.add_api_route(
        "/v1/metrics/{name}/values/{dimension}",
        metric_dimension_values,
        methods=["GET"],
        response_model=ValuesResponse,
        responses=SERIES_RESPONSES,
        summary="The values a dimension took over a range",
    )
    router.add_api_route(
        "/v1/runs",
        list_runs,
        methods=["GET"],
        response_model=RunsResponse,
        responses=ERROR_RESPONSES,
        summary="Run statistics of the published hours",
    )
    router.add_api_route(
        "/health",
        health,
        methods=["GET"],
        response_model=HealthResponse,
        responses={503: {"model": HealthUnavailableResponse, "description": "Redis unreachable"}},
        summary="Liveness and freshness",
    )
    return router


def filter_parameters(spec: MetricSpec) -> list[dict[str, Any]]:
    """OpenAPI entries for the dimension filters, which are read from the raw query."""
    return [
        {
            "name": dim,
            "in": "query",
            "required": False,
            "schema": {"type": "string", "minLength": 1},
            "description": f"Keep only {dim} = this value (for metrics with dimension {dim}).",
        }
        for dim in spec.dimensions
    ]


def list_metrics(spec: SpecDep) -> MetricsResponse:
    return MetricsResponse(metrics=[metric_info(m) for m in spec.metrics], cards=list(spec.cards))


def metric_info(metric: Metric) -> MetricInfo:
    return MetricInfo(
        name=metric.name,
        description=metric.description,
        unit=metric.unit,
        kind=metric.kind.value,
        dimensions=list(metric.dimensions),
        grains=list(metric.grains),
        max_window_days=metric.max_window_days,
    )


def metric_series(
    name: str,
    request: Request,
    spec: SpecDep,
    settings: SettingsDep,
    client: RedisDep,
    layout: LayoutDep,
    # Declared for OpenAPI and presence checks; parse_series_query reads the raw
    # query string, because dimension filters are parameters too.
    start: StartQuery,
    end: EndQuery,
    # Enums in the docs only: a wrong value must be our 400 code, not a validation error.
    grain: Annotated[str, Query(description="Bucket size.", json_schema_extra={"enum": list(GRAINS)})] = "hour",
    tz: Annotated[str, Query(description="IANA time zone of the buckets, e.g. Europe/Berlin.")] = "UTC",
    window: Annotated[
        str | None, Query(description="<N>d: each point is the metric over the N days ending at its bucket's end.")
    ] = None,
    group_by: Annotated[str | None, Query(description="A dimension: one series per value.")] = None,
    limit: Annotated[
        str | None, Query(description="With group_by: the N largest series over the range, plus 'other'.")
    ] = None,
) -> SeriesResponse:
    metric = known_metric(spec, name)
    query = parse_series_query(metric, request.query_params.multi_items(), range_limits(settings))
    plan = plan_reads(spec, query)
    snapshot = read_or_cold(client, layout, plan)
    now = datetime.now(UTC)
    series = build_series(spec, query, plan, snapshot, now)
    headers = caching_headers(request, snapshot.version, snapshot.as_of, now, settings.publish_lag_seconds)
    if not_modified(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = series_response(query, series, snapshot.as_of, snapshot.version)
    body.warnings = filter_warnings(spec, query, snapshot, client, layout)
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


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


def filter_warnings(
    spec: MetricSpec, query: SeriesRequest, snapshot: Snapshot, client: redis.Redis, layout: KeyLayout
) -> list[ResponseWarning]:
    """``value_not_seen`` for each filter value that no stored slice of the range holds.

    A grouped request read whole hashes, so they tell; a filtered one read only its
    own slice, and only when no hash held it is each dimension's values read
    (a second read, paid by requests that are probably misspelt).
    """
    if not query.filters:
        return []
    if query.group_by is not None:
        seen = seen_values(snapshot, query.filters)
    elif slice_seen(snapshot, query.filters):
        return []
    else:
        seen = {}
        for dim in query.filters:
            request = ValuesRequest(query.metric, dim, query.tz, query.start, query.end)
            seen[dim] = {value for value, _ in _values(spec, request, client, layout)}
    path = f"/v1/metrics/{query.metric.name}/values"
    return [
        ResponseWarning(
            code="value_not_seen",
            dimension=dim,
            value=value,
            message=f"{dim}={value!r} occurs in no stored slice of the range, so it matches nothing; "
            f"values seen: {', '.join(sorted(seen[dim])[:20])} (all of them: GET {path}/{dim})",
        )
        for dim, value in unseen_filter_values(query.filters, seen)
    ]


def _values(
    spec: MetricSpec, request: ValuesRequest, client: redis.Redis, layout: KeyLayout
) -> list[tuple[str, int | float | None]]:
    plan = plan_values(spec, request)
    return dimension_values(spec, request, plan, read_or_cold(client, layout, plan))


def metric_dimension_values(
    name: str,
    dimension: str,
    request: Request,
    spec: SpecDep,
    settings: SettingsDep,
    client: RedisDep,
    layout: LayoutDep,
    start: StartQuery,
    end: EndQuery,
    tz: Annotated[str, Query(description="IANA time zone that dates and offset-less times are read in.")] = "UTC",
) -> ValuesResponse:
    """Every value ``dimension`` takes in the stored slices of [start, end), sorted, with the metric over the range.

    Filter pickers list these; a value not here matches nothing in the range.
    """
    metric = known_metric(spec, name)
    query = parse_values_query(metric, dimension, request.query_params.multi_items(), range_limits(settings))
    plan = plan_values(spec, query)
    snapshot = read_or_cold(client, layout, plan)
    now = datetime.now(UTC)
    headers = caching_headers(request, snapshot.version, snapshot.as_of, now, settings.publish_lag_seconds)
    if not_modified(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = ValuesResponse(
        metric=metric.name,
        dimension=dimension,
        tz=query.tz.key,
        start=format_ts(query.start, query.tz),
        end=format_ts(query.end, query.tz),
        values=[DimensionValue(value=v, count=c) for v, c in dimension_values(spec, query, plan, snapshot)],
        as_of=snapshot.as_of,
        build=snapshot.version,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


def caching_headers(request: Request, version: str, as_of: str | None, now: datetime, lag: int) -> dict[str, str]:
    """ETag (the builds read plus the exact query), Cache-Control until the next publish, Last-Modified."""
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    etag = hashlib.sha256(f"{request.url.path}?{query}#{version}".encode()).hexdigest()[:24]
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control(now, lag)}
    if as_of:
        published = parse_published_at(as_of)
        headers["Last-Modified"] = format_datetime(published, usegmt=True)
    return headers


def cache_control(now: datetime, lag: int) -> str:
    """Shared caches may keep a series until the next hourly publish is expected."""
    return f"public, max-age={seconds_to_next_publish(now, lag)}"


def seconds_to_next_publish(now: datetime, lag: int) -> int:
    """Seconds until the next hourly publish is expected: the top of an hour plus ``lag``."""
    expected = now.replace(minute=0, second=0, microsecond=0) + timedelta(seconds=lag)
    if expected <= now:
        expected += timedelta(hours=1)
    return max(1, int((expected - now).total_seconds()))


def not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def series_response(
    query: SeriesRequest, series: list[SeriesData], as_of: str | None, build: str = ""
) -> SeriesResponse:
    return SeriesResponse(
        metric=query.metric.name,
        grain=query.grain,
        tz=query.tz.key,
        window=f"{query.window_days}d" if query.window_days else None,
        start=format_ts(query.start, query.tz),
        end=format_ts(query.end, query.tz),
        series=[
            Series(
                labels=s.labels,
                other=s.other,
                points=[
                    Point(ts=format_ts(ts, query.tz), value=value, complete=done, revised=revised)
                    for (ts, value), done, revised in zip(s.points, s.complete, s.revised, strict=True)
                ],
            )
            for s in series
        ],
        as_of=as_of,
        build=build,
    )


def list_runs(
    settings: SettingsDep,
    client: RedisDep,
    layout: LayoutDep,
    start: Annotated[str | None, Query(description="First UTC hour (inclusive), ISO-8601.")] = None,
    end: Annotated[str | None, Query(description="Last UTC hour (exclusive), ISO-8601.")] = None,
) -> RunsResponse:
    """The run statistics of [start, end); with neither bound, of the newest computed hours."""
    if start is None and end is None:
        hours = newest_computed_hours(client, layout, NEWEST_RUNS)
    else:
        bounds = {name: value for name, value in (("start", start), ("end", end)) if value is not None}
        first = parse_bound(bounds, "start", "hour", UTC_ZONE)
        last = parse_bound(bounds, "end", "hour", UTC_ZONE)
        check_range(first, last, "hour", range_limits(settings))
        hours = utc_hours(first, last)
    runs = []
    for run in read_runs(client, layout, hours):
        stats = current_names(run["stats"])
        published = parse_published_at(run["published_at"])
        runs.append(
            Run(
                hour=format_hour(run["hour"]),
                build=run["build"],
                published_at=run["published_at"],
                input_lag_seconds=(published - run["hour"] - timedelta(hours=1)).total_seconds(),
                **{k: v for k, v in stats.items() if k in Run.model_fields and k not in ("hour", "build")},
            )
        )
    return RunsResponse(runs=runs)


def health(settings: SettingsDep, spec: SpecDep, client: RedisDep, layout: LayoutDep) -> HealthResponse | JSONResponse:
    try:
        meta = read_meta(client, layout)
        redefined = read_redefined(client, layout, spec.fingerprints)
    except REDIS_DOWN_ERRORS as exc:
        return error_response(
            "redis_unavailable",
            redis_down_message(settings.api_read_url, exc),
            extra={"status": "unavailable", "redis": "unreachable"},
        )
    lag = meta.lag_seconds(datetime.now(UTC))
    return HealthResponse(
        # Cold is told by `cache`; an empty Redis is not stale, and it is up.
        status="stale" if freshness_state(lag, settings.max_lag_seconds) == "stale" else "ok",
        redis="ok",
        cache="warm" if meta.published_at else "cold",
        newest_hour=format_hour(meta.newest_hour) if meta.newest_hour else None,
        lag_seconds=lag,
        max_lag_seconds=settings.max_lag_seconds,
        published_at=meta.published_at,
        pending_hours=[format_hour(hour) for hour in meta.pending_hours],
        redefined_hours={metric: [format_hour(hour) for hour in hours] for metric, hours in redefined.items()},
    )
