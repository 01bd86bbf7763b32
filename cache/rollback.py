"""Rollback: make an hour's previous kept build live again, in one atomic switch.

A publish keeps the last few builds of each hour readable (``{p}:history:{hour}``,
:mod:`cache.switch`); ``tally rollback`` switches the hour back to the second.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import redis

from cache.builds import HourBuild, build_definitions
from cache.client import hash_fields, text
from cache.days import rebuild_days
from cache.events import ROLLED_BACK, Event, queue_event
from cache.indexes import day_index_after, definitions_after
from cache.keys import KeyLayout, mark_changed, pointer_value, published_at_text
from cache.options import EVENTS_KEEP
from cache.tiers import hours_from
from tally.core.layout import as_utc, format_hour, hour_field
from tally.core.rollup import NotComputedError
from tally.core.spec import MetricSpec

log = logging.getLogger(__name__)


def rollback_hour(
    client: redis.Redis,
    layout: KeyLayout,
    hour: datetime,
    *,
    spec: MetricSpec | None = None,
    now: datetime | None = None,
    events_keep: int = EVENTS_KEEP,
) -> str:
    """Make the hour's previous kept build live again (one atomic switch, with its event); return its id."""
    published_at = published_at_text(now or datetime.now(UTC))
    hour = as_utc(hour)
    field_name = hour_field(hour)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(layout.pointer())
                history = [text(b) for b in pipe.lrange(layout.history(field_name), 0, -1)]
                kept = pipe.get(layout.manifest(history[1], field_name)) if len(history) >= 2 else None
                if kept is None:  # no earlier build, or it has expired
                    pipe.unwatch()
                    kept_from = hours_from(client, layout)
                    if kept_from is not None and hour.date() < kept_from:
                        raise NotComputedError(
                            f"hour {format_hour(hour)} is in the day tier (older than TALLY_HOUR_RETENTION_DAYS): "
                            "Redis keeps only its day aggregate, no builds to roll back to; fix its rollup and "
                            "`tally publish` it, which rebuilds its day"
                        )
                    raise NotComputedError(f"hour {format_hour(hour)} has no earlier build kept to roll back to")
                previous = history[1]
                manifest = json.loads(kept)
                rolled_back = [
                    HourBuild(hour, previous, {m: {} for m in manifest["metrics"]}, {}, manifest.get("stats", {}))
                ]
                day_index = day_index_after(pipe, layout, rolled_back, published_at, {field_name})
                definitions = definitions_after(pipe, layout, [(hour, build_definitions(rolled_back[0]))])
                pipe.multi()
                pipe.hset(layout.pointer(), field_name, pointer_value(previous, published_at, revised=True))
                pipe.delete(layout.history(field_name))
                pipe.rpush(layout.history(field_name), previous, *[b for b in history if b != previous])
                pipe.hset(layout.day_index(), mapping=hash_fields(day_index))
                pipe.hset(layout.definitions(), mapping=hash_fields(definitions))
                pipe.hset(layout.meta(), "published_at", published_at)
                generation = mark_changed(pipe, layout)
                event = Event(
                    type=ROLLED_BACK,
                    hours=[format_hour(hour)],
                    metrics=sorted(manifest["metrics"]),
                    builds={format_hour(hour): previous},
                    revised=[format_hour(hour)],
                    generation=generation,
                    at=published_at,
                )
                queue_event(pipe, layout, event, events_keep)
                pipe.execute()
                break
            except redis.WatchError:
                log.info("pointer changed during rollback; retrying")
    if spec is not None:
        rebuild_days(client, layout, spec, [hour.date()])
    return previous
