"""The app factory: wires settings, spec, Redis client, middleware, errors and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.middleware.cors import CORSMiddleware

from cache.keys import KeyLayout
from cache.reads import open_client
from dashboard_api.errors import install_error_handlers
from dashboard_api.event_hub import EventHub
from dashboard_api.http_cache import cache_control
from dashboard_api.metrics import install_metrics
from dashboard_api.middleware import ALLOWED_METHODS, BearerTokenMiddleware, ReadOnlyMiddleware
from dashboard_api.page import STATIC_PATH, install_page
from dashboard_api.response_cache import ResponseCacheMiddleware, Warming
from dashboard_api.routes import build_router
from tally.core.settings import Settings, get_settings
from tally.core.spec import load_spec

DESCRIPTION = (
    "Read-only access to Tally's hourly rollups. Only GET and HEAD are allowed; every "
    'error is `{"error": {"code", "message"}}` with a stable code.'
)
# Swagger UI as vendored under static/vendor/ (see its README): /docs must work with no internet.
SWAGGER_UI_PATH = f"{STATIC_PATH}/vendor/swagger-ui"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; ``settings`` (tests) replaces :func:`get_settings` everywhere.

    Routes read the settings from ``app.state`` (:mod:`dashboard_api.deps`): no
    dependency override, which FastAPI would re-analyse on every request.

    The spec is loaded here, so an invalid spec fails at startup (SpecError), not
    on the first request.
    """
    resolved = settings or get_settings()
    # FastAPI's own /docs and /redoc load their scripts from a CDN; /docs is served by install_docs instead.
    app = FastAPI(
        title="Tally", version="1", description=DESCRIPTION, lifespan=_lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = resolved
    app.state.spec = load_spec(resolved.spec_path)
    install_error_handlers(app)
    # Added innermost first: CORS answers a browser's preflight (OPTIONS) before the
    # token and read-only rules, which would refuse it; the response cache sees only
    # requests those rules let through.
    # Builds the recently asked series again after each publish (started with the event hub).
    app.state.warming = Warming()
    if resolved.api_response_cache_mb > 0:
        app.add_middleware(
            ResponseCacheMiddleware,
            layout=KeyLayout(resolved.redis_prefix),
            max_bytes=resolved.api_response_cache_mb * 2**20,
            cache_control=lambda now: cache_control(now, resolved.publish_lag_seconds),
            warming=app.state.warming,
        )
    app.add_middleware(ReadOnlyMiddleware)
    if resolved.api_token is not None:
        app.add_middleware(BearerTokenMiddleware, token=resolved.api_token.get_secret_value())
    # Outside the response cache, token and read-only rules, so their answers are counted; inside CORS.
    install_metrics(app)
    if resolved.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=resolved.cors_origins,
            allow_methods=list(ALLOWED_METHODS),
            allow_headers=["Authorization", "If-None-Match", "Last-Event-ID"],
            expose_headers=["ETag", "Last-Modified", "Cache-Control"],
            max_age=600,
        )
    app.include_router(build_router(app.state.spec))
    install_page(app)
    install_docs(app)
    return app


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` from the vendored assets under ``/static``."""

    def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a path prefix, every URL the page loads needs that prefix back.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER_UI_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI_PATH}/favicon-32x32.png",
            # Swagger UI otherwise shows a badge image fetched from validator.swagger.io for non-local hosts.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # No ping here: the API must start while Redis is down and serve 503s until it is back.
    settings = app.state.settings
    client = open_client(settings.api_read_url)
    # One reader of the publish events for every /v1/events subscriber of this process.
    app.state.event_hub = EventHub(
        settings.api_read_url, KeyLayout(settings.redis_prefix), keepalive=settings.events_keepalive_seconds
    )
    app.state.event_hub.start()
    if settings.api_response_cache_mb > 0:
        app.state.warming.start(app.state.event_hub, client)
    try:
        yield {"redis": client}
    finally:
        await app.state.warming.stop()
        await app.state.event_hub.stop()
        client.close()
