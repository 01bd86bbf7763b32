"""What is known to be out of date in Redis, and marking it so readers can tell.

Two things make a published hour stale before anything is republished:

* its **input changed** since the rollup was built (late or rewritten files;
  found by the job's fingerprints, :func:`jobs.hourly.changed_hours`), or
* its **rollup is not the one published**: the job wrote a newer rollup but the
  publish never happened (a crash or outage between the two steps).

:func:`mark_pending` records both in ``{p}:pending`` at the start of a run, so
the API reports the hours' points as ``complete: false`` until the publish that
brings them up to date removes the marks (:mod:`cache.publish`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import redis

from cache.keys import KeyLayout, hour_field, published_at_text
from tally.layout import stats_hour_dir

INPUT_CHANGED = "input changed since the hour was built"
NOT_PUBLISHED = "a newer rollup is not published yet"


def rollup_computed_at(data_dir: Path, hour: datetime) -> str | None:
    """When the hour's durable rollup was computed (ISO text), or None if it has none."""
    stats_dir = stats_hour_dir(data_dir, hour)
    if not any(stats_dir.glob("*.parquet")):
        return None
    rows = pq.read_table(stats_dir, columns=["computed_at"]).to_pylist()
    return rows[0]["computed_at"].isoformat() if rows else None


def unpublished_hours(
    client: redis.Redis, layout: KeyLayout, data_dir: Path, hours: Sequence[datetime]
) -> list[datetime]:
    """Hours whose durable rollup differs from the one last published (or that were never published)."""
    computed = {hour: at for hour in hours if (at := rollup_computed_at(data_dir, hour)) is not None}
    if not computed:
        return []
    recorded = client.hmget(layout.published_rollups(), [hour_field(hour) for hour in computed])
    return [
        hour for (hour, at), seen in zip(computed.items(), recorded, strict=True) if seen is None or seen.decode() != at
    ]


def mark_pending(
    client: redis.Redis,
    layout: KeyLayout,
    window: Sequence[datetime],
    pending: Mapping[datetime, str],
    *,
    now: datetime | None = None,
) -> None:
    """Make ``pending`` (hour -> reason) exactly the pending hours within ``window``, in one MULTI/EXEC.

    Hours of the window not in ``pending`` lose their mark (their input went back
    to what was built); an hour already marked keeps its first detection time.
    """
    detected_at = published_at_text(now or datetime.now(UTC))
    cleared = [hour_field(hour) for hour in window if hour not in pending]
    with client.pipeline(transaction=True) as pipe:
        if cleared:
            pipe.hdel(layout.pending(), *cleared)
        for hour, reason in pending.items():
            mark = json.dumps({"reason": reason, "detected_at": detected_at})
            pipe.hsetnx(layout.pending(), hour_field(hour), mark)
        pipe.execute()


def read_pending(client: redis.Redis, layout: KeyLayout) -> dict[str, dict[str, str]]:
    """Every pending mark: hour field -> {"reason", "detected_at"}."""
    return {field.decode(): json.loads(mark) for field, mark in client.hgetall(layout.pending()).items()}
