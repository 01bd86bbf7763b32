"""``GET /v1/metrics/{name}/values/{dimension}``: the values a dimension took over a range, with counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from dashboard_api.calendar import format_ts
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.http_cache import caching_headers, not_modified
from dashboard_api.models import DimensionValue, ValuesResponse
from dashboard_api.params import parse_values_query
from dashboard_api.plan import plan_values
from dashboard_api.route_helpers import EndQuery, StartQuery, known_metric, range_limits, read_or_cold
from dashboard_api.series import dimension_values


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
) -> ValuesResponse | Response:  # a 304 or a replayed body; the model is the route's response_model
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
