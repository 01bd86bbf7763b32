"""``GET /health``: liveness (can Redis be read) and freshness (how old the newest publish is)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.responses import JSONResponse

from cache.freshness import freshness_state
from cache.reads import read_meta, read_redefined, read_runs
from cache.storage import StorageReport, read_report
from cache.tiers import hour_tier_start
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep, SpecDep
from dashboard_api.errors import REDIS_DOWN_ERRORS, error_response, redis_down_message
from dashboard_api.models import CardinalityWarning, HealthResponse, StorageSection
from tally.core.layout import format_hour
from tally.core.runstats import fold_warnings

# The hours up to the newest published one whose folded dimensions /health warns about (a day).
CARDINALITY_HOURS = 24


def health(settings: SettingsDep, spec: SpecDep, client: RedisDep, layout: LayoutDep) -> HealthResponse | JSONResponse:
    try:
        meta = read_meta(client, layout)
        redefined = read_redefined(client, layout, spec.fingerprints)
        storage = read_report(client, layout)
        # The newest day back from the newest hour (already read): no scan of the pointer hash,
        # which holds every kept hour, so /health stays a handful of small reads.
        recent = read_runs(client, layout, hours_back(meta.newest_hour, CARDINALITY_HOURS))
    except REDIS_DOWN_ERRORS as exc:
        return error_response(
            "redis_unavailable",
            redis_down_message(settings.api_read_url, exc),
            extra={"status": "unavailable", "redis": "unreachable"},
        )
    now = datetime.now(UTC)
    lag = meta.lag_seconds(now)
    oldest_hour = hour_tier_start(now, settings.hour_retention_days)
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
        oldest_hour=format_hour(oldest_hour) if oldest_hour else None,
        storage=storage_section(storage),
        cardinality_warnings=[
            CardinalityWarning(
                source=w.source,
                dimension=w.dimension,
                max_values=w.max_values,
                distinct_values=w.distinct_values,
                rows_folded=w.rows_folded,
                hours=[format_hour(hour) for hour in w.hours],
                message=w.message,
            )
            for w in fold_warnings((run["hour"], run["stats"]) for run in recent)
        ],
    )


def hours_back(newest: datetime | None, count: int) -> list[datetime]:
    """``count`` hours ending at ``newest``, oldest first (none before anything is published)."""
    return [] if newest is None else [newest - timedelta(hours=i) for i in range(count - 1, -1, -1)]


def storage_section(report: StorageReport | None) -> StorageSection | None:
    """The /health view of the publisher's storage report (never measured: None)."""
    if report is None:
        return None
    return StorageSection(
        redis_bytes=report.redis_bytes,
        by_tier=report.by_tier,
        by_metric=report.by_metric,
        rollup_bytes=report.rollup_bytes,
        growth_per_day_bytes=report.growth.per_day_bytes if report.growth else None,
        growth_basis=report.growth.basis if report.growth else None,
        budget_bytes=report.budget_bytes,
        days_until_budget=report.days_until_budget,
        measured_at=report.measured_at,
        warning=report.warning,
    )
