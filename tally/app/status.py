"""What `tally status` reports: freshness of what Redis serves, and the statistics of the newest runs.

It reads Redis through the API's own readers (:mod:`dashboard_api.store`), so
the CLI and ``/health`` can never disagree about the newest hour or the lag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis

from cache.client import safe_url
from cache.freshness import freshness_state
from cache.keys import KeyLayout, parse_published_at
from cache.reads import newest_computed_hours, read_meta, read_redefined, read_runs
from tally.core.layout import ONE_HOUR, format_hour
from tally.core.runstats import FoldWarning, current_names, fold_warnings

RUN_FIELDS = (
    "rows_read",
    "valid_rows",
    "invalid_rows",
    "duplicate_rows",
    "counted_events",
    "application_seconds",
    "application_hours",
)


@dataclass(frozen=True)
class Status:
    redis_url: str
    prefix: str
    max_lag_seconds: float
    newest_hour: datetime | None = None
    lag_seconds: float | None = None
    published_at: str | None = None
    pending_hours: list[datetime] = field(default_factory=list)
    # Per metric: hours built under an older definition of it, or before it was added.
    redefined_hours: dict[str, list[datetime]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    # Dimensions folded into `other` in the listed runs (more values than their max_values).
    folded: list[FoldWarning] = field(default_factory=list)
    error: str | None = None

    @property
    def state(self) -> str:
        """``ok``, ``stale`` (lag above the limit), ``cold`` (nothing published) or ``unavailable``."""
        if self.error is not None:
            return "unavailable"
        return freshness_state(self.lag_seconds, self.max_lag_seconds)

    @property
    def exit_code(self) -> int:
        return 0 if self.state == "ok" else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "redis_url": self.redis_url,
            "prefix": self.prefix,
            "newest_hour": format_hour(self.newest_hour) if self.newest_hour else None,
            "lag_seconds": self.lag_seconds,
            "max_lag_seconds": self.max_lag_seconds,
            "published_at": self.published_at,
            "pending_hours": [format_hour(h) for h in self.pending_hours],
            "redefined_hours": {m: [format_hour(h) for h in hours] for m, hours in self.redefined_hours.items()},
            "runs": self.runs,
            "cardinality_warnings": [
                {
                    "source": w.source,
                    "dimension": w.dimension,
                    "max_values": w.max_values,
                    "distinct_values": w.distinct_values,
                    "rows_folded": w.rows_folded,
                    "hours": [format_hour(h) for h in w.hours],
                    "message": w.message,
                }
                for w in self.folded
            ],
            "error": self.error,
        }


def read_status(
    client: redis.Redis,
    layout: KeyLayout,
    *,
    redis_url: str,
    runs: int,
    max_lag_seconds: float,
    definitions: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Status:
    """Freshness and the ``runs`` newest computed hours' statistics; Redis errors become ``unavailable``.

    ``definitions`` (the spec's metric fingerprints) adds the hours each metric is out of date in.
    """
    base = Status(redis_url=safe_url(redis_url), prefix=layout.prefix, max_lag_seconds=max_lag_seconds)
    try:
        meta = read_meta(client, layout)
        recent = read_runs(client, layout, newest_computed_hours(client, layout, runs))
        redefined = read_redefined(client, layout, definitions) if definitions else {}
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return replace(base, error=f"Redis at {base.redis_url} is unreachable: {exc}")
    return replace(
        base,
        newest_hour=meta.newest_hour,
        lag_seconds=meta.lag_seconds(now or datetime.now(UTC)),
        published_at=meta.published_at,
        pending_hours=meta.pending_hours,
        redefined_hours=redefined,
        runs=[_run(run) for run in reversed(recent)],  # newest first
        folded=fold_warnings((run["hour"], run["stats"]) for run in recent),
    )


def _run(run: dict[str, Any]) -> dict[str, Any]:
    stats = current_names(run["stats"])
    published = parse_published_at(run["published_at"])
    return {
        "hour": format_hour(run["hour"]),
        "build": run["build"],
        "published_at": run["published_at"],
        "input_lag_seconds": (published - run["hour"] - ONE_HOUR).total_seconds(),
        **{name: stats.get(name) for name in RUN_FIELDS},
        "invalid_by_reason": stats.get("invalid_by_reason", {}),
        "folded_dimensions": stats.get("folded_dimensions", []),
    }


def render(status: Status) -> str:
    """The human-readable report: a freshness summary, then one table row per run."""
    lines = [f"Redis         {status.redis_url} (prefix {status.prefix})"]
    if status.error is not None:
        return "\n".join([*lines, f"status        UNAVAILABLE: {status.error}"])
    if status.newest_hour is None:
        return "\n".join([*lines, "status        COLD: nothing is published yet (run `tally backfill` or `rehydrate`)"])
    verdict = "ok" if status.state == "ok" else "STALE"
    lines += [
        f"newest hour   {format_hour(status.newest_hour)} (published {status.published_at})",
        f"lag           {_duration(status.lag_seconds)} (limit {_duration(status.max_lag_seconds)}): {verdict}",
        f"pending       {', '.join(format_hour(h) for h in status.pending_hours) or 'none'}",
        *[
            f"redefined     {metric}: {len(hours)} hour(s), {format_hour(hours[0])} .. {format_hour(hours[-1])} "
            "(built under an older definition; recomputed within the late-data horizon, or by `tally backfill`)"
            for metric, hours in status.redefined_hours.items()
        ],
        *[
            f"WARNING       {w.message}; hours {format_hour(w.hours[0])} .. {format_hour(w.hours[-1])}"
            for w in status.folded
        ],
        "",
        _table(status.runs),
    ]
    return "\n".join(lines)


def _table(runs: list[dict[str, Any]]) -> str:
    header = ("hour", "rows read", "valid", "invalid", "duplicates", "counted", "application", "published at")
    rows = [
        (
            run["hour"],
            *(_count(run[name]) for name in RUN_FIELDS[:5]),
            _application(run["application_seconds"], run["application_hours"]),
            run["published_at"],
        )
        for run in runs
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    # Text columns left-aligned, numbers right-aligned.
    aligned = [
        "  ".join(
            cell.ljust(width) if i in (0, len(header) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(aligned) if rows else "no computed hours"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _application(seconds: float | None, hours: int | None) -> str:
    """The application's time and how many hours shared it: ``41.2s/24h``."""
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" + (f"/{hours}h" if hours else "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    hours, rest = divmod(int(seconds), 3600)
    return f"{sign}{hours}h {rest // 60:02d}m {rest % 60:02d}s" if hours else f"{sign}{rest // 60}m {rest % 60:02d}s"
