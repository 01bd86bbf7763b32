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
from cache.events import PENDING, Event, queue_event
from cache.keys import KeyLayout, mark_changed, published_at_text
from cache.options import EVENTS_KEEP
from tally.core.layout import format_hour, hour_field

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
    events_keep: int = EVENTS_KEEP,
) -> None:
    """Make ``pending`` (hour -> reason) exactly the pending hours within ``window``, in one MULTI/EXEC.

    Hours of the window not in ``pending`` lose their mark (their input went back
    to what was built); an hour already marked keeps its first detection time. A
    change of marks is one ``pending`` event (:mod:`cache.events`) in the same
    transaction, with a new generation; no change writes nothing.
    """
    detected_at = published_at_text(now or datetime.now(UTC))
    hours = sorted({*window, *pending})
    fields = [hour_field(hour) for hour in hours]
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(layout.pending())
                marked = {hour for hour, mark in zip(hours, pipe.hmget(layout.pending(), fields), strict=True) if mark}
                cleared = [hour for hour in hours if hour in marked and hour not in pending]
                added = {hour: reason for hour, reason in sorted(pending.items()) if hour not in marked}
                if not cleared and not added:
                    pipe.unwatch()
                    return
                pipe.multi()
                if cleared:
                    pipe.hdel(layout.pending(), *[hour_field(hour) for hour in cleared])
                for hour, reason in added.items():
                    mark = json.dumps({"reason": reason, "detected_at": detected_at})
                    pipe.hset(layout.pending(), hour_field(hour), mark)
                generation = mark_changed(pipe, layout)
                event = Event(
                    type=PENDING,
                    hours=[format_hour(hour) for hour in sorted({*cleared, *added})],
                    metrics=[],
                    pending={format_hour(hour): reason for hour, reason in added.items()},
                    cleared=[format_hour(hour) for hour in cleared],
                    generation=generation,
                    at=detected_at,
                )
                queue_event(pipe, layout, event, events_keep)
                pipe.execute()
                return
            except redis.WatchError:
                continue
