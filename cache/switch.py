"""The atomic switch: point hours at their new builds in one MULTI/EXEC.

The new builds' keys are written first (with a TTL), then, under a WATCH of the
pointer hash, one transaction moves the pointers, the day index, the
definitions, the kept-build histories and the newest hour together, persists
the new keys, gives the builds that fall out of the histories a short TTL and
appends the switch's publish event (:mod:`cache.events`). A reader sees the
previous state or the new one, never a mix, and a client told by the event sees the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from cache.builds import HourBuild, build_definitions, build_keys
from cache.client import hash_fields
from cache.events import PENDING, PUBLISHED, REHYDRATED, REVISED, Event, queue_event
from cache.indexes import day_index_after, day_tier_builds, definitions_after
from cache.keys import KeyLayout, mark_changed, pointer_build, pointer_value
from cache.options import PublishOptions
from cache.prepublish import refuse_over_budget, stage_builds, verified
from tally.core.faults import checkpoint
from tally.core.layout import format_hour, hour_field, parse_hour_field

log = logging.getLogger(__name__)


def switch_builds(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], options: PublishOptions, published_at: str
) -> list[HourBuild]:
    """Make the changed ones of ``builds`` live in one switch; return them as switched (verified, annotated).

    Unchanged hours are left alone (their pending marks are still cleared). Every
    changed build is verified first; one failure switches nothing unless
    ``options.force``.
    """
    hours = [hour_field(b.hour) for b in builds]
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                # The pending hash too: the event names the marks this switch clears.
                pipe.watch(layout.pointer(), layout.pending())
                current = dict(zip(hours, pipe.hmget(layout.pointer(), hours), strict=True))
                marked = [hour for hour, mark in zip(hours, pipe.hmget(layout.pending(), hours), strict=True) if mark]
                changed = [b for b in builds if pointer_build(current[hour_field(b.hour)]) != b.build]
                if not changed:
                    _record_unchanged(client, pipe, layout, builds, marked, published_at, options)
                    return []
                changed = verified(client, layout, changed, current, options.max_movement_factor, options.force)
                staged = stage_builds(client, layout, changed, published_at, options)
                new_keys = staged.keys
                checkpoint("publish:before-switch")
                histories, evicted = _histories_after(client, layout, changed, current, options.keep_builds)
                old_keys = [key for hour, build in evicted for key in build_keys(client, layout, build, hour)]
                refuse_over_budget(client, layout, changed, staged, old_keys, options)
                # Replacing data that was already served makes the hour a revision, for good. An
                # hour of a day in the day tier has no pointer, but its day index entry says what it served.
                served = day_tier_builds(pipe, layout, [b.hour for b in changed if current[hour_field(b.hour)] is None])
                revised = {hour_field(b.hour) for b in changed if current[hour_field(b.hour)] is not None}
                revised |= {
                    hour_field(b.hour)
                    for b in changed
                    if hour_field(b.hour) in served and served[hour_field(b.hour)] != (b.build, False)
                }
                day_index = day_index_after(pipe, layout, changed, published_at, revised)
                definitions = definitions_after(pipe, layout, [(b.hour, build_definitions(b)) for b in changed])
                pipe.multi()
                for hour, history in histories.items():
                    pipe.delete(layout.history(hour))
                    pipe.rpush(layout.history(hour), *history)
                for build in changed:
                    hour = hour_field(build.hour)
                    pipe.hset(layout.pointer(), hour, pointer_value(build.build, published_at, revised=hour in revised))
                pipe.hset(layout.day_index(), mapping=hash_fields(day_index))
                pipe.hset(layout.definitions(), mapping=hash_fields(definitions))
                _record_published(pipe, layout, builds)
                generation = mark_changed(pipe, layout)
                queue_event(
                    pipe,
                    layout,
                    _switch_event(changed, revised, marked, generation, published_at, options),
                    options.events_keep,
                )
                for key in new_keys:
                    pipe.persist(key)
                for key in old_keys:
                    pipe.expire(key, options.superseded_ttl)
                pipe.hset(layout.meta(), "published_at", published_at)
                _queue_advance_newest_hour(pipe, layout, max(hour_field(b.hour) for b in changed))
                pipe.execute()
                return changed
            except redis.WatchError:
                log.info("pointer changed during publish; retrying")


def _switch_event(
    changed: Sequence[HourBuild],
    revised: set[str],
    marked: Sequence[str],
    generation: str,
    published_at: str,
    options: PublishOptions,
) -> Event:
    kind = REHYDRATED if options.rehydrating else REVISED if revised else PUBLISHED
    ordered = sorted(changed, key=lambda b: b.hour)
    return Event(
        type=kind,
        hours=[format_hour(b.hour) for b in ordered],
        metrics=sorted({name for b in changed for name in (*b.values, *b.sketches)}),
        builds={format_hour(b.hour): b.build for b in ordered},
        revised=[format_hour(b.hour) for b in ordered if hour_field(b.hour) in revised],
        cleared=[format_hour(parse_hour_field(hour)) for hour in marked],
        generation=generation,
        at=published_at,
    )


def _record_unchanged(
    client: redis.Redis,
    pipe: Any,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    marked: Sequence[str],
    published_at: str,
    options: PublishOptions,
) -> None:
    """Nothing to switch: record the rollups as published; cleared pending marks are a ``pending`` event.

    ``pipe`` is watching the pointer and pending hashes: a WatchError retries the switch.
    """
    if not marked:
        pipe.unwatch()
        _record_published(client, layout, builds)
        return
    pipe.multi()
    _record_published(pipe, layout, builds)
    generation = mark_changed(pipe, layout)  # cleared pending marks change `complete`
    cleared = [format_hour(parse_hour_field(hour)) for hour in marked]
    # Pending marks are per hour: an event without metrics concerns every metric of its hours.
    event = Event(type=PENDING, hours=cleared, metrics=[], cleared=cleared, generation=generation, at=published_at)
    queue_event(pipe, layout, event, options.events_keep)
    pipe.execute()


def _record_published(client: Any, layout: KeyLayout, builds: Sequence[HourBuild]) -> Any:
    """The builds' rollups are what is live now: record them, and clear the hours' pending marks.

    ``client`` is a client, or a pipeline whose MULTI/EXEC these writes join.
    Returns how many pending marks were cleared (from a client; a pipeline queues it).
    """
    fingerprints = {
        hour_field(b.hour): b.stats["input_fingerprint"] for b in builds if b.stats.get("input_fingerprint")
    }
    if fingerprints:
        client.hset(layout.published_rollups(), mapping=fingerprints)
    return client.hdel(layout.pending(), *[hour_field(b.hour) for b in builds])


def _histories_after(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], current: dict[str, Any], keep: int
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Each hour's kept builds after the switch (live first), and the (hour, build) pairs dropped."""
    with client.pipeline(transaction=False) as pipe:
        for build in builds:
            pipe.lrange(layout.history(hour_field(build.hour)), 0, -1)
        kept_now = pipe.execute()
    histories: dict[str, list[str]] = {}
    evicted: list[tuple[str, str]] = []
    for build, raw in zip(builds, kept_now, strict=True):
        hour = hour_field(build.hour)
        history = [b.decode() for b in raw]
        live = pointer_build(current[hour])
        if live and live not in history:  # published before histories were kept
            history.insert(0, live)
        history = [build.build, *[b for b in history if b != build.build]]
        histories[hour] = history[:keep]
        evicted += [(hour, old) for old in history[keep:]]
    return histories, evicted


def _queue_advance_newest_hour(pipe: Any, layout: KeyLayout, candidate: str) -> None:
    # Hour fields sort as text; only move forward, whatever order hours publish in.
    pipe.eval(
        "local cur = redis.call('HGET', KEYS[1], 'newest_hour') "
        "if (not cur) or cur < ARGV[1] then redis.call('HSET', KEYS[1], 'newest_hour', ARGV[1]) end",
        1,
        layout.meta(),
        candidate,
    )
