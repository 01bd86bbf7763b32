"""``GET /v1/runs``: the run statistics of the published hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query

from cache.keys import parse_published_at
from cache.reads import newest_computed_hours, read_runs
from dashboard_api.calendar import UTC_ZONE, utc_hours
from dashboard_api.deps import LayoutDep, RedisDep, SettingsDep
from dashboard_api.models import Run, RunsResponse
from dashboard_api.params import check_range, parse_bound
from dashboard_api.route_helpers import range_limits
from tally.core.layout import format_hour
from tally.core.runstats import current_names

# GET /v1/runs without a range: a day of hours.
NEWEST_RUNS = 24


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
        stats: dict[str, Any] = dict(current_names(run["stats"]))
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
