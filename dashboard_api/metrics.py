"""Prometheus metrics of the API at ``GET /metrics``: requests by route and status, freshness, and storage.

Request metrics are labelled with the route template (``/v1/metrics/{name}``),
never the raw path, so a scanner requesting random URLs adds one ``unmatched``
series, not one per URL. Methods outside GET, HEAD and OPTIONS count as
``other`` for the same reason.

Freshness is read from Redis when Prometheus scrapes, the way ``/health`` reads
it, so the lag is the one of that instant, not of the last request. Storage
gauges come from the publisher's last storage report (:mod:`cache.storage`).

Each app gets its own :class:`~prometheus_client.CollectorRegistry`: several apps
in one process (the test suite) never share or clash over a metric.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache.keys import KeyLayout
from cache.reads import read_meta
from cache.storage import read_report
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep
from dashboard_api.errors import REDIS_DOWN_ERRORS

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths whose route template is remembered: the dashboards' few, with room for more;
# a scanner's random paths only evict each other.
REMEMBERED_PATHS = 1024
# From a response-cache replay (tens of microseconds) to a slow cold read of a long range.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class RequestMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


def install_metrics(app: FastAPI) -> RequestMetrics:
    """Count every request the app answers and serve ``GET /metrics``; a second call changes nothing.

    The middleware is added outermost at the time of the call, so call this after
    the middleware whose answers should be counted (token, read-only, response
    cache) and before CORS.
    """
    installed = getattr(app.state, "request_metrics", None)
    if installed is not None:
        return installed
    registry = CollectorRegistry(auto_describe=True)
    metrics = RequestMetrics(
        registry=registry,
        requests=Counter(
            "tally_api_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "tally_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
    )
    app.state.request_metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, router=app.router, metrics=metrics)
    app.add_api_route(METRICS_PATH, prometheus_metrics, methods=["GET"], include_in_schema=False)
    return metrics


class RequestMetricsMiddleware:
    """Observe every HTTP request's count and latency, labelled by route template and status.

    A replayed answer takes tens of microseconds, so what this adds to each request
    counts: the route template of a recent path is remembered rather than matched
    against every route again, and each labelled child is looked up once (in
    prometheus_client that is a lock and a label check per call).
    """

    def __init__(self, app: ASGIApp, router: Router, metrics: RequestMetrics) -> None:
        self.app = app
        self.router = router
        self.metrics = metrics
        # (routes count, method, root_path, path) -> template; the count keeps a route added later from being missed.
        self._templates: OrderedDict[tuple[int, str, str, str], str] = OrderedDict()
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._latencies: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            method = scope["method"].upper()
            method = method if method in KNOWN_METHODS else "other"
            route = self._route(scope)
            count = self._counts.get((method, route, status))
            if count is None:
                count = self._counts[method, route, status] = self.metrics.requests.labels(method, route, str(status))
            latency = self._latencies.get((method, route))
            if latency is None:
                latency = self._latencies[method, route] = self.metrics.latency.labels(method, route)
            count.inc()
            latency.observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        """:func:`route_template`, remembered for the most recent :data:`REMEMBERED_PATHS` paths."""
        key = (len(self.router.routes), scope["method"], scope.get("root_path", ""), scope["path"])
        route = self._templates.get(key)
        if route is not None:
            self._templates.move_to_end(key)
            return route
        route = self._templates[key] = route_template(self.router, scope)
        if len(self._templates) > REMEMBERED_PATHS:
            self._templates.popitem(last=False)
        return route


def route_template(router: Router, scope: Scope) -> str:
    """The path template of the route ``scope`` is for, e.g. ``/v1/metrics/{name}``.

    Matched here rather than read from the scope, because an answer may come
    from a middleware that never reaches the router (a 401, a 405, a cached reply).
    """
    partial = None
    for route in router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return _template(route)
        if match == Match.PARTIAL and partial is None:
            partial = _template(route)  # the path matched, the method did not (e.g. HEAD on a GET route)
    return partial or UNMATCHED_ROUTE


def _template(route: object) -> str:
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED_ROUTE))


def prometheus_metrics(request: Request, client: RedisDep, layout: LayoutDep, settings: SettingsDep) -> Response:
    """The app's request metrics and the freshness of Redis, in Prometheus's text format."""
    metrics: RequestMetrics = request.app.state.request_metrics
    freshness = freshness_metrics(client, layout, settings.max_lag_seconds) + storage_metrics(client, layout)
    body = generate_latest(_Scrape(metrics.registry, freshness))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def freshness_metrics(
    client: redis.Redis, layout: KeyLayout, max_lag_seconds: float, now: datetime | None = None
) -> list[Metric]:
    """Redis reachability, freshness lag and pending hours, read now (as ``/health`` reads them)."""
    up = GaugeMetricFamily("tally_redis_up", "1 if the API could read Redis at this scrape, else 0.")
    lag = GaugeMetricFamily(
        "tally_freshness_lag_seconds",
        "Seconds since the newest published hour ended (absent while Redis is down or nothing is published).",
    )
    pending = GaugeMetricFamily("tally_pending_hours", "Published hours awaiting a recompute or a republish.")
    limit = GaugeMetricFamily(
        "tally_max_lag_seconds",
        "The freshness limit (TALLY_MAX_LAG_SECONDS): a lag above it is stale in /health and `tally status`.",
    )
    limit.add_metric([], max_lag_seconds)
    try:
        meta = read_meta(client, layout)
    except REDIS_DOWN_ERRORS:
        up.add_metric([], 0)
        return [up, lag, pending, limit]
    up.add_metric([], 1)
    seconds = meta.lag_seconds(now or datetime.now(UTC))
    if seconds is not None:
        lag.add_metric([], seconds)
    pending.add_metric([], len(meta.pending_hours))
    return [up, lag, pending, limit]


def storage_metrics(client: redis.Redis, layout: KeyLayout) -> list[Metric]:
    """Redis bytes per tier and metric, the budget and the days until it, from the publisher's last report.

    Read from ``{p}:storage`` (one GET), never measured here: a scrape must not SCAN
    Redis. Absent until a publisher has measured, and while Redis is down.
    """
    redis_bytes = GaugeMetricFamily(
        "tally_redis_bytes",
        "Bytes under the prefix by tier (hour builds, day aggregates, index) and metric (empty: no metric's), "
        "as the publisher measured them after its last publish.",
        labels=["tier", "metric"],
    )
    budget = GaugeMetricFamily("tally_redis_budget_bytes", "The Redis budget (TALLY_REDIS_BUDGET_MB), in bytes.")
    days_left = GaugeMetricFamily(
        "tally_storage_days_until_budget", "Days until the budget is reached at the measured growth per day."
    )
    rollups = GaugeMetricFamily("tally_rollup_bytes", "Bytes of the durable rollups on disk.")
    families: list[Metric] = [redis_bytes, budget, days_left, rollups]
    try:
        report = read_report(client, layout)
    except REDIS_DOWN_ERRORS:
        return families
    if report is None:
        return families
    for tier, by_metric in sorted(report.tier_bytes.items()):
        for metric, size in sorted(by_metric.items()):
            redis_bytes.add_metric([tier, metric], size)
    if report.budget_bytes is not None:
        budget.add_metric([], report.budget_bytes)
    if report.days_until_budget is not None:
        days_left.add_metric([], report.days_until_budget)
    if report.rollup_bytes is not None:
        rollups.add_metric([], report.rollup_bytes)
    return families


@dataclass(frozen=True)
class _Scrape:
    """What one scrape renders: the app's registry, then freshness read at this instant."""

    registry: CollectorRegistry
    freshness: list[Metric]

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.freshness
