"""``GET /health``: liveness (can Redis be read) and freshness (how old the newest publish is)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.responses import JSONResponse

from cache.freshness import freshness_state
from cache.reads import read_meta, read_redefined
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.errors import REDIS_DOWN_ERRORS, error_response, redis_down_message
from dashboard_api.models import HealthResponse
from tally.core.layout import format_hour


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
