"""``GET /v1/metrics`` (the catalogue) and ``GET /v1/metrics/{name}`` (one metric as time series).

Handlers are thin: validate (:mod:`dashboard_api.params`), plan and read
(:mod:`dashboard_api.plan`, :mod:`dashboard_api.store`), compute
(:mod:`dashboard_api.series`), shape the response (:mod:`dashboard_api.models`).
They are plain ``def`` on purpose: the Redis client is synchronous, so FastAPI
runs them in its thread pool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import redis
from fastapi import Query, Request
from fastapi.responses import Response

from cache import merges
from cache.keys import KeyLayout
from dashboard_api.calendar import format_ts
from dashboard_api.csv_format import CSV_MEDIA_TYPE, csv_etag, label_columns, series_csv
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.http_cache import caching_headers, not_modified
from dashboard_api.models import MetricInfo, MetricsResponse, ResponseWarning, SeriesResponse
from dashboard_api.params import parse_series_query, split_format
from dashboard_api.plan import ReadPlan, Snapshot, plan_reads, plan_values, request_dimensions, stored_parts
from dashboard_api.requests import SeriesRequest, ValuesRequest
from dashboard_api.route_helpers import (
    EndQuery,
    StartQuery,
    check_hour_retention,
    known_metric,
    range_limits,
    read_or_cold,
)
from dashboard_api.series import (
    SeriesData,
    build_series,
    dimension_values,
    seen_values,
    slice_seen,
    unseen_filter_values,
)
from tally.core.spec import GRAINS, Kind, Metric, MetricSpec


def list_metrics(spec: SpecDep) -> MetricsResponse:
    return MetricsResponse(metrics=[metric_info(spec, m) for m in spec.metrics], cards=list(spec.cards))


def stored_sets(spec: MetricSpec, metric: Metric) -> list[list[str]]:
    """The slice sets a metric stores (the total as []); for a ratio, those both its parts store."""
    parts = [part.slice_dimension_sets() for part, _ in stored_parts(spec, metric)]
    # A ratio keeps its own dimensions only: a part may store sets over dimensions the ratio lacks.
    own = set(metric.dimensions)
    return [list(s) for s in parts[0] if set(s) <= own and all(s in other for other in parts[1:])]


def metric_info(spec: MetricSpec, metric: Metric) -> MetricInfo:
    return MetricInfo(
        name=metric.name,
        description=metric.description,
        unit=metric.unit,
        kind=metric.kind.value,
        dimensions=list(metric.dimensions),
        grains=list(metric.grains),
        max_window_days=metric.max_window_days,
        slices=stored_sets(spec, metric),
        sketch=metric.merge.value if metric.has_sketch else None,
        relative_error=None if metric.is_ratio else merges.nominal_error(metric, spec.sketch_lg_k),
        q=metric.q if metric.kind is Kind.QUANTILE else None,
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
    q: Annotated[
        str | None,
        Query(
            description="Quantile metrics only: the quantile served, 0 < q < 1 (default: the spec's q). "
            "Other values are 400 bad_quantile; q on another kind of metric is 400 bad_parameter."
        ),
    ] = None,
    bounds: Annotated[
        str | None,
        Query(
            description="true: each point of a count_distinct metric carries lower and upper, its estimate's "
            "about-95% interval (two standard deviations, from the sketch). Other kinds: 400 bad_parameter.",
            json_schema_extra={"enum": ["true", "false"]},
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        Query(
            alias="format",
            description="csv: the points as text/csv, a header row ts,<label columns...>,value,complete,revised "
            "(plus lower,upper with bounds=true; label columns are the filters, then group_by) and one row per "
            "point; a null is an empty cell, a label starting with = + - @ gets a leading '. "
            "Without format, Accept: text/csv (ranked above application/json) asks for the same. "
            "Other values: 400 bad_parameter.",
            json_schema_extra={"enum": ["json", "csv"]},
        ),
    ] = None,
) -> SeriesResponse | Response:  # a 304 or a replayed body; the model is the route's response_model
    metric = known_metric(spec, name)
    representation, items = split_format(request.query_params.multi_items(), request.headers.get("accept"))
    query = parse_series_query(metric, items, range_limits(settings))
    now = datetime.now(UTC)
    check_hour_retention(query, settings, now)
    plan = plan_reads(spec, query)
    snapshot = read_or_cold(client, layout, plan)
    series = build_series(spec, query, plan, snapshot, now)
    headers = caching_headers(request, snapshot.version, snapshot.as_of, now, settings.publish_lag_seconds)
    # The same URL has two representations (Accept): each its own ETag, and shared caches told so.
    headers["Vary"] = "Accept"
    if representation == "csv":
        headers["ETag"] = csv_etag(headers["ETag"])
    if not_modified(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    if representation == "csv":
        # No warnings: a CSV has nowhere to put them, so their extra read is not paid.
        labels = label_columns(list(query.filters), query.group_by)
        text = series_csv(series_document(query, series, snapshot.as_of, snapshot.version), labels, bounds=query.bounds)
        return Response(text, media_type=CSV_MEDIA_TYPE, headers=headers)
    warnings = filter_warnings(spec, query, plan, snapshot, client, layout)
    document = series_document(query, series, snapshot.as_of, snapshot.version, warnings)
    return Response(json_bytes(document), media_type="application/json", headers=headers)


def series_document(
    query: SeriesRequest,
    series: list[SeriesData],
    as_of: str | None,
    build: str = "",
    warnings: Sequence[ResponseWarning] = (),
) -> dict[str, Any]:
    """The response as JSON data, :class:`SeriesResponse` field for field (``tests/test_api_fast_read.py``).

    Written directly, not as models dumped: a 168-point answer built 170 models,
    validated and dumped them, for a tenth of its time. ``q`` only for quantiles;
    ``lower``/``upper`` only when bounds were asked for.
    """
    tz = query.tz
    document: dict[str, Any] = {
        "metric": query.metric.name,
        "grain": query.grain,
        "tz": tz.key,
        "window": f"{query.window_days}d" if query.window_days else None,
        "q": query.q,
        "start": format_ts(query.start, tz),
        "end": format_ts(query.end, tz),
        "series": [
            {"labels": s.labels, "other": s.other, "points": _points(s, tz, bounds=query.bounds)} for s in series
        ],
        "build": build,
        "as_of": as_of,
        "warnings": [warning.model_dump() for warning in warnings],
    }
    if query.q is None:
        del document["q"]
    return document


def _points(series: SeriesData, tz: ZoneInfo, *, bounds: bool) -> list[dict[str, Any]]:
    flags = zip(series.points, series.complete, series.revised, strict=True)
    if not bounds:
        return [{"ts": format_ts(ts, tz), "value": v, "complete": c, "revised": r} for (ts, v), c, r in flags]
    return [
        {
            "ts": format_ts(ts, tz),
            "value": value,
            "complete": done,
            "revised": revised,
            "lower": None if bound is None else float(bound[0]),
            "upper": None if bound is None else float(bound[1]),
        }
        for ((ts, value), done, revised), bound in zip(flags, series.bounds or [None] * len(series.points), strict=True)
    ]


def json_bytes(document: dict[str, Any]) -> bytes:
    """``document`` as compact UTF-8 JSON, as JSONResponse writes it (orjson: a fraction of the time)."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the standard library writes any
        return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def filter_warnings(
    spec: MetricSpec,
    query: SeriesRequest,
    plan: ReadPlan,
    snapshot: Snapshot,
    client: redis.Redis,
    layout: KeyLayout,
) -> list[ResponseWarning]:
    """``value_not_seen`` for each filter value that no stored slice of the range holds.

    A grouped request read whole hashes, so they tell; a filtered one read only its
    own slice, and only when no hash held it is each dimension's values read
    (a second read, paid by requests that are probably misspelt). A request
    answered by merging declared slices read whole hashes too: they tell.
    """
    if not query.filters:
        return []
    if query.group_by is not None or plan.covers:
        seen = seen_values(snapshot, query.filters, plan, request_dimensions(query))
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
