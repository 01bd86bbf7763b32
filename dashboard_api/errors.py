"""The API's error contract: stable codes, their HTTP statuses, the JSON body, the handlers.

Every error a client can see is ``{"error": {"code": ..., "message": ...}}``. Codes
are part of the public API; messages are for people and may change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cache.client import RedisUnavailableError, safe_url

log = logging.getLogger(__name__)

STATUS_BY_CODE: Mapping[str, int] = {
    "bad_grain": 400,
    "bad_parameter": 400,
    "bad_range": 400,
    "bad_timezone": 400,
    "bad_window": 400,
    "unsupported_timezone": 400,
    "range_too_large": 400,
    "beyond_hour_retention": 400,
    # A filter/group_by combination no declared `slices` set of the metric (or a ratio's part) covers.
    "slice_not_stored": 400,
    "unknown_dimension": 400,
    "bad_quantile": 400,
    # /v1/retention and /v1/funnel: a metric that is no theta count_distinct, or steps over other ids.
    "incompatible_metric": 400,
    "mixed_id_spaces": 400,
    "unauthorized": 401,
    "not_found": 404,
    "unknown_metric": 404,
    "method_not_allowed": 405,
    "internal": 500,
    "redis_unavailable": 503,
    "cache_cold": 503,
}
# Other statuses Starlette may raise by itself get this code.
GENERIC_HTTP_CODE = "http_error"

# Connection-level failures only: a Redis that answers with an error is a bug (500).
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    RedisUnavailableError,
)


class ApiError(Exception):
    """A client-visible error with a stable code; raised anywhere, rendered by a handler."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 400)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    code: str,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The JSON error response for ``code``; ``extra`` adds top-level fields (health)."""
    body = {**(extra or {}), **error_body(code, message)}
    return JSONResponse(body, status_code=status or STATUS_BY_CODE[code], headers=headers)


def redis_down_message(redis_url: str, exc: Exception) -> str:
    # safe_url masks the password; redis-py's own messages name only host and port.
    return f"Redis at {safe_url(redis_url)} is unavailable: {exc}"


def validation_message(exc: RequestValidationError) -> str:
    """Name the offending parameter, e.g. ``query parameter 'start': Field required``."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ())]
    where = f"{location[0]} parameter {location[-1]!r}" if len(location) >= 2 else "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response("bad_parameter", validation_message(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response("not_found", f"no such path: {request.url.path}")
    if exc.status_code == 405:
        return error_response("method_not_allowed", f"{request.method} is not allowed here")
    return error_response(GENERIC_HTTP_CODE, str(exc.detail), status=exc.status_code)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", exc)
    return error_response("redis_unavailable", redis_down_message(request.app.state.settings.api_read_url, exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback server-side; the client only learns that it failed.
    return error_response("internal", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in REDIS_DOWN_ERRORS:
        app.add_exception_handler(error_type, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
