"""Retention tiers in Redis: hours older than the hour tier live on only in their day aggregate.

Redis keeps each hour's build for ``TALLY_HOUR_RETENTION_DAYS`` (the *hour tier*)
and each UTC day's aggregate for ``TALLY_DAY_RETENTION_DAYS`` (the *day tier*; 0 =
forever). Moving a day out of the hour tier (:func:`move_day`) removes its hours'
pointers, histories and build keys in one MULTI/EXEC, but only once the day's
aggregate is verified live (its ``@builds`` equal the day index and the pointers,
under a WATCH of the pointer hash); the day index entry, the day hashes (their
sketches re-encoded as HLL_4 in the same switch: the same registers in about half the
bytes, see :mod:`cache.sketches`) and the recorded definitions stay as they were. A reader therefore sees the day
before or after the move, never a gap: whole days are read through the day index
and its aggregate either way, and a reader that resolved an hour's pointer just
before the move still finds the build's keys, which expire only after the
superseded TTL.

``{p}:meta`` ``hours_from`` (:data:`cache.keys.META_HOURS_FROM`) is the first UTC day
whose hours are still kept; the API refuses reads that need an hour before it.
Publishing an hour of a moved day republishes every computed hour of that day from
the durable rollups, so its aggregate is rebuilt from all of them, and moves the day
again (:func:`cache.publish.publish_hours`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import cast

import redis

from cache import sketches
from cache.builds import build_keys
from cache.client import hash_fields, text
from cache.days import STAGED_DAY_TTL_SECONDS, day_keys, rebuild_days, week_keys
from cache.keys import (
    DAY_BUILDS_FIELD,
    META_DAYS_FROM,
    META_HOURS_FROM,
    KeyLayout,
    day_builds_text,
    day_hours,
    mark_changed,
    parse_day_index_value,
    pointer_build,
)
from cache.weeks import week_of
from tally.core.layout import day_field, floor_hour, hour_field, parse_day_field, parse_hour_field
from tally.core.spec import Merge, MetricSpec

log = logging.getLogger(__name__)

# A day whose aggregate keeps changing under the move (publishes racing it) is left for the next run.
MOVE_ATTEMPTS = 5


class NotMovedError(RuntimeError):
    """A day's aggregate could not be verified live, so its hours were kept."""


@dataclass(frozen=True)
class TierReport:
    moved_days: list[date] = field(default_factory=list)
    expired_days: list[date] = field(default_factory=list)


def hour_tier_start(now: datetime, retention_days: int) -> datetime | None:
    """The oldest hour the hour tier serves: ``retention_days`` back from the current hour (None: forever)."""
    if retention_days <= 0:
        return None
    return floor_hour(now.astimezone(UTC)) - timedelta(days=retention_days)


def first_kept_day(now: datetime, retention_days: int) -> date | None:
    """The first UTC day a tier of ``retention_days`` keeps whole: days before it have no hour inside the tier."""
    start = hour_tier_start(now, retention_days)
    return None if start is None else start.date()


def hours_from(client: redis.Redis, layout: KeyLayout) -> date | None:
    """The first UTC day whose hours Redis still keeps (None: no day was ever moved)."""
    value = client.hget(layout.meta(), META_HOURS_FROM)
    return parse_day_field(text(value)) if value else None


def days_with_hours_before(client: redis.Redis, layout: KeyLayout, before: date) -> list[date]:
    """UTC days before ``before`` some hour of which still has a pointer (one HKEYS of the pointer hash)."""
    days = {parse_hour_field(text(name)).date() for name in client.hkeys(layout.pointer())}
    return sorted(day for day in days if day < before)


def move_day(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day: date, superseded_ttl: int) -> bool:
    """Drop the day's hours from Redis once its aggregate is verified live; False if it had no hour.

    The aggregate is rebuilt first when it does not match the live hours (a publish
    died before its day rebuild, or the spec gained a metric since).
    """
    hours = [hour_field(hour) for hour in day_hours(day)]
    day_text = day_field(day)
    aggregates = _aggregate_keys(layout, spec, day)
    compacted: dict[str, str] = {}
    with client.pipeline(transaction=True) as pipe:
        for _ in range(MOVE_ATTEMPTS):
            compacted = {}
            try:
                pipe.watch(layout.pointer())
                builds = [pointer_build(value) for value in pipe.hmget(layout.pointer(), hours)]
                if not any(builds):
                    pipe.unwatch()
                    return False
                expected = day_builds_text(builds)
                index = pipe.hget(layout.day_index(), day_text)
                recorded = [pipe.hget(key, DAY_BUILDS_FIELD) for key in aggregates]
                live = index is not None and parse_day_index_value(text(index))[0] == expected
                if not live or any(value is None or text(value) != expected for value in recorded):
                    pipe.unwatch()
                    rebuild_days(client, layout, spec, [day])
                    continue
                kept = _kept_builds(client, layout, hours, builds)
                expiring = [key for hour, build in kept for key in build_keys(client, layout, build, hour)]
                compacted = _stage_compact_sketches(client, layout, spec, day)
                pipe.multi()
                for temporary, key in compacted.items():
                    pipe.rename(temporary, key)
                    pipe.persist(key)  # RENAME keeps the temporary key's TTL
                pipe.hdel(layout.pointer(), *[hour for hour, build in zip(hours, builds, strict=True) if build])
                pipe.delete(*[layout.history(hour) for hour in hours])
                for key in expiring:
                    pipe.expire(key, superseded_ttl)
                _queue_advance(pipe, layout, META_HOURS_FROM, day_field(day + timedelta(days=1)))
                # Hour-grain answers over the day are refused from now on; kept responses must go too.
                mark_changed(pipe, layout)
                pipe.execute()
                return True
            except redis.WatchError:
                if compacted:
                    client.delete(*compacted)
                log.info("pointer changed while moving day %s to the day tier; retrying", day_text)
    raise NotMovedError(f"day {day_text}: its aggregate kept changing during the move; its hours stay in Redis")


def _aggregate_keys(layout: KeyLayout, spec: MetricSpec, day: date) -> list[str]:
    """The day hashes a rebuild writes for the spec (cache.days): values, and sketches of distinct counts."""
    day_text = day_field(day)
    keys = [layout.day_values(day_text, metric.name) for metric in spec.stored]
    return keys + [layout.day_sketches(day_text, metric.name) for metric in spec.stored if metric.has_sketch]


def _stage_compact_sketches(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day: date) -> dict[str, str]:
    """The day's sketch hashes re-encoded as HLL_4 under temporary keys (temporary -> day key).

    The same registers, so every union and estimate is unchanged (cache.sketches);
    a hash already compact, or without a dense sketch, is left as it is.
    """
    token = secrets.token_hex(8)
    staged: dict[str, str] = {}
    for metric in spec.stored:
        if metric.merge is not Merge.HLL:  # theta and KLL sketches have no smaller form of the same content
            continue
        key = layout.day_sketches(day_field(day), metric.name)
        fields = {text(name): value for name, value in cast(dict[bytes, bytes], client.hgetall(key)).items()}
        compact: dict[str, str | bytes] = {
            name: value
            if name == DAY_BUILDS_FIELD or not sketches.is_dense_hll8(value, spec.sketch_lg_k)
            else sketches.compact_union_image(value, spec.sketch_lg_k)
            for name, value in fields.items()
        }
        if compact == fields:
            continue
        temporary = layout.temporary(key, token)
        with client.pipeline(transaction=False) as pipe:
            pipe.hset(temporary, mapping=hash_fields(compact))
            pipe.expire(temporary, STAGED_DAY_TTL_SECONDS)
            pipe.execute()
        staged[temporary] = key
    return staged


def _kept_builds(
    client: redis.Redis, layout: KeyLayout, hours: Sequence[str], builds: Sequence[str | None]
) -> list[tuple[str, str]]:
    """Every (hour, build) Redis keeps for the hours: the live builds and those kept for rollback."""
    with client.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.lrange(layout.history(hour), 0, -1)
        histories = pipe.execute()
    kept: set[tuple[str, str]] = set()
    for hour, build, history in zip(hours, builds, histories, strict=True):
        kept |= {(hour, text(b)) for b in history}
        if build is not None:
            kept.add((hour, build))
    return sorted(kept)


def expire_day(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day: date, superseded_ttl: int) -> bool:
    """Drop everything Redis holds of a day beyond the day tier; False if it held nothing.

    Its hours go first (if any are still kept), then in one MULTI/EXEC its day
    index entry, definitions and aggregates, and its week's aggregates (the week is
    no longer whole): a reader sees the day served, or not computed.
    """
    move_day(client, layout, spec, day, superseded_ttl)
    day_text = day_field(day)
    aggregates = day_keys(layout, spec, day) + week_keys(layout, spec, week_of(day))
    with client.pipeline(transaction=True) as pipe:
        pipe.hdel(layout.day_index(), day_text)
        pipe.hdel(layout.definitions(), day_text)
        pipe.delete(*aggregates)
        _queue_advance(pipe, layout, META_DAYS_FROM, day_field(day + timedelta(days=1)))
        mark_changed(pipe, layout)
        removed = pipe.execute()
    return bool(removed[0] or removed[2])


def enforce_tiers(
    client: redis.Redis,
    layout: KeyLayout,
    spec: MetricSpec,
    *,
    hour_retention_days: int,
    day_retention_days: int,
    superseded_ttl: int,
    now: datetime | None = None,
) -> TierReport:
    """Move every day that has left the hour tier, and expire every day that has left the day tier."""
    moment = now or datetime.now(UTC)
    report = TierReport()
    keep_hours_from = first_kept_day(moment, hour_retention_days)
    if keep_hours_from is not None:
        for day in days_with_hours_before(client, layout, keep_hours_from):
            try:
                moved = move_day(client, layout, spec, day, superseded_ttl)
            except NotMovedError as exc:  # the publish itself succeeded: the next one moves the day
                log.warning("%s", exc)
                continue
            if moved:
                report.moved_days.append(day)
    keep_days_from = first_kept_day(moment, day_retention_days)
    if keep_days_from is not None:
        for day in _indexed_days(client, layout):
            if day < keep_days_from and expire_day(client, layout, spec, day, superseded_ttl):
                report.expired_days.append(day)
    if report.moved_days or report.expired_days:
        log.info(
            "tiers: moved %d day(s) to the day tier, expired %d day(s)",
            len(report.moved_days),
            len(report.expired_days),
        )
    return report


def restore_days(days: Iterable[date], moved_before: date | None) -> list[date]:
    """Which of ``days`` are in the day tier (their hours were moved) and must be republished whole."""
    if moved_before is None:
        return []
    return sorted({day for day in days if day < moved_before})


def _indexed_days(client: redis.Redis, layout: KeyLayout) -> list[date]:
    return sorted(parse_day_field(text(name)) for name in client.hkeys(layout.day_index()))


def _queue_advance(pipe: redis.client.Pipeline, layout: KeyLayout, field_name: str, candidate: str) -> None:
    # Day fields sort as text; a tier boundary only moves forward.
    pipe.eval(
        "local cur = redis.call('HGET', KEYS[1], ARGV[1]) "
        "if (not cur) or cur < ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end",
        1,
        layout.meta(),
        field_name,
        candidate,
    )
