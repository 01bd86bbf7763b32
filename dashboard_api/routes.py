"""The router: every endpoint, its response models and the errors it documents.

Handlers live by resource: :mod:`dashboard_api.metrics_routes` (catalogue and
series), :mod:`dashboard_api.values_routes`, :mod:`dashboard_api.runs_routes`
and :mod:`dashboard_api.health_routes`. Registering them all here, in one order,
keeps the OpenAPI document (the contract) in one place.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from cache.events import EVENT_TYPES
from dashboard_api.cohort_routes import funnel_table, retention_table
from dashboard_api.events_routes import event_stream
from dashboard_api.health_routes import health
from dashboard_api.metrics_routes import list_metrics, metric_series
from dashboard_api.models import (
    ErrorResponse,
    FunnelResponse,
    HealthResponse,
    HealthUnavailableResponse,
    MetricsResponse,
    RetentionResponse,
    RunsResponse,
    SeriesResponse,
    ValuesResponse,
)
from dashboard_api.runs_routes import list_runs
from dashboard_api.values_routes import metric_dimension_values
from tally.core.spec import MetricSpec

# Every error shares one body; "default" also stops FastAPI advertising a 422 we never send.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameters."},
    "default": {"model": ErrorResponse, "description": "Any other error, same body."},
}
SERIES_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorResponse, "description": "unknown_metric"},
    503: {"model": ErrorResponse, "description": "redis_unavailable"},
}


# One event of the stream (before OpenAPI 3.2, a text/event-stream `schema` describes each
# event, which schemathesis checks: a bare "string" was refused for the first reset it saw).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "description": "the stream id, `<ms>-<seq>`: send it back as Last-Event-ID"},
        "event": {"type": "string", "enum": [*EVENT_TYPES, "reset"]},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "one line of JSON"},
    },
}


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
        "/v1/retention",
        retention_table,
        methods=["GET"],
        response_model=RetentionResponse,
        responses=SERIES_RESPONSES,
        summary="Retention cohorts: who of each cohort came back k periods later",
        openapi_extra={"parameters": filter_parameters(spec)},
    )
    router.add_api_route(
        "/v1/funnel",
        funnel_table,
        methods=["GET"],
        response_model=FunnelResponse,
        responses=SERIES_RESPONSES,
        summary="A funnel: ids in every one of the first i steps, per bucket",
        openapi_extra={"parameters": filter_parameters(spec)},
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
        "/v1/events",
        event_stream,
        methods=["GET"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                "description": "Server-sent events: `id`, `event` (published, revised, rolled_back, pending, "
                "rehydrated, reset) and one `data` line of JSON each; keep-alive comments in between.",
            },
            **ERROR_RESPONSES,
            503: {"model": ErrorResponse, "description": "redis_unavailable"},
        },
        summary="Publish events as they happen, replayable from Last-Event-ID or since",
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
