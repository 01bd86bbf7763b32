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

import redis

from cache.client import text
from cache.keys import KeyLayout, mark_changed, published_at_text
from tally.core.layout import hour_field

INPUT_CHANGED = "input changed since the hour was built"


def freshness_state(lag_seconds: float | None, max_lag_seconds: float) -> str:
    """``ok``, ``stale`` (the newest hour ended more than the limit ago) or ``cold`` (nothing published).

    The one rule behind ``/health``'s status and ``tally status``.
    """
    if lag_seconds is None:
        return "cold"
    return "stale" if lag_seconds > max_lag_seconds else "ok"


NOT_PUBLISHED = "a newer rollup is not published yet"


def unpublished_hours(client: redis.Redis, layout: KeyLayout, built: Mapping[datetime, str | None]) -> list[datetime]:
    """Hours whose durable rollup differs from the one last published (or that were never published).

    ``built`` maps hours with a complete rollup to the input fingerprint it was
    built from (:func:`tally.core.runstats.built_fingerprints`); that fingerprint is what
    a publish records, so a rerun of unchanged input is not "unpublished".
    """
    if not built:
        return []
    recorded = client.hmget(layout.published_rollups(), [hour_field(hour) for hour in built])
    return [
        hour
        for (hour, fp), seen in zip(built.items(), recorded, strict=True)
        if seen is None or fp is None or text(seen) != fp
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
        changed = any(pipe.execute())
    if changed:  # after the marks: a reader that sees the new token sees them too
        mark_changed(client, layout)
