"""Reading published hours from Redis: the only module of the API that talks to Redis.

A range is resolved in one pipeline that reads the day index (whole UTC days)
and the pointer hash (the remaining hours); a publish switches both in one
MULTI/EXEC, so a response never mixes two publishes. A second pipeline reads the
day aggregates and hourly hashes those builds name (see :func:`read_snapshot`).
Connection failures propagate as redis-py errors; the app turns them into 503s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache.keys import (
    ANY_METRIC,
    DAY_BUILDS_FIELD,
    NOT_COMPUTED,
    UNRECORDED,
    KeyLayout,
    day_field,
    hour_field,
    parse_day_index_value,
    parse_definitions_value,
)
from dashboard_api.query import HashRead, ReadPlan, Snapshot

# Short, so a dead Redis costs a request about a second, not a hung worker.
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 2.0
# One immediate retry replaces a pooled connection that died (e.g. Redis restarted).
RETRY = Retry(NoBackoff(), retries=1)
# A {p}:days entry: (builds text, newest published_at, revised flag per hour).
DayIndexEntry = tuple[str, str, tuple[bool, ...]]


@dataclass(frozen=True)
class Pointer:
    build: str
    published_at: str
    revised: bool = False


@dataclass(frozen=True)
class Meta:
    newest_hour: datetime | None
    published_at: str | None
    pending_hours: list[datetime]

    def lag_seconds(self, now: datetime) -> float | None:
        """Seconds from the end of the newest published hour to ``now``; None when nothing is published."""
        if self.newest_hour is None:
            return None
        return (now - self.newest_hour - timedelta(hours=1)).total_seconds()


def open_client(url: str) -> redis.Redis:
    """A client that connects lazily, so the app starts (and recovers) whatever Redis's state."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=RETRY,
    )


def parse_hour_field(text: str) -> datetime:
    """Inverse of :func:`cache.keys.hour_field` (``2026-11-27T10Z``)."""
    return datetime.strptime(text, "%Y-%m-%dT%HZ").replace(tzinfo=UTC)


def read_meta(client: redis.Redis, layout: KeyLayout) -> Meta:
    with client.pipeline(transaction=False) as pipe:
        pipe.hmget(layout.meta(), ["newest_hour", "published_at"])
        pipe.hkeys(layout.pending())
        (newest, published_at), pending = pipe.execute()
    return Meta(
        newest_hour=parse_hour_field(newest.decode()) if newest else None,
        published_at=published_at.decode() if published_at else None,
        pending_hours=sorted(parse_hour_field(field.decode()) for field in pending),
    )


def read_pointers(client: redis.Redis, layout: KeyLayout, hours: Sequence[datetime]) -> dict[datetime, Pointer]:
    """The live build of every computed hour among ``hours`` (others are absent)."""
    if not hours:
        return {}
    raw = client.hmget(layout.pointer(), [hour_field(hour) for hour in hours])
    return {hour: _pointer(value) for hour, value in zip(hours, raw, strict=True) if value}


def newest_computed_hours(client: redis.Redis, layout: KeyLayout, count: int) -> list[datetime]:
    """The ``count`` newest hours that have a live build, oldest first."""
    hours = sorted(parse_hour_field(field.decode()) for field in client.hkeys(layout.pointer()))
    return hours[-count:] if count > 0 else []


def _pointer(value: bytes) -> Pointer:
    document = orjson.loads(value)  # thousands per request: the stdlib parser shows up in profiles
    return Pointer(build=document["build"], published_at=document["published_at"], revised="revised" in document)


class CacheColdError(RuntimeError):
    """Nothing is published under the prefix: Redis is empty (fresh, or restarted)."""


def read_snapshot(client: redis.Redis, layout: KeyLayout, plan: ReadPlan) -> Snapshot:
    """Read what ``plan`` needs in two round trips (three if a day aggregate is stale).

    1. The day index for the whole UTC days (one field per day) and the pointers
       of the remaining edge hours, in one pipeline: a consistent snapshot, since
       a publish switches both in one MULTI/EXEC.
    2. Day aggregates, and the hourly hashes of computed edge hours.
    3. Only for a day whose aggregate was not built from the live builds (its
       ``@builds`` differs from the index): that day's hourly hashes.
    """
    days = sorted({day for wanted in plan.days.values() for day in wanted})
    edge_hours = sorted({hour for wanted in plan.hours.values() for hour in wanted})
    definition_days = sorted(plan.all_days) if plan.definitions else []
    index, pointers, pending, definitions = _read_index_and_pointers(client, layout, days, edge_hours, definition_days)
    # A day without an index entry has no computed hour, or was published before the
    # index existed: its pointers say which (one more round trip, only then).
    unindexed = [day for day in days if day not in index]
    if unindexed:
        _, more, _, _ = _read_index_and_pointers(client, layout, [], [h for d in unindexed for h in _day_hours(d)])
        pointers.update(more)
    builds = {hour: pointer.build for hour, pointer in pointers.items()}
    published_at = {hour: pointer.published_at for hour, pointer in pointers.items()}
    revised = {hour for hour, pointer in pointers.items() if pointer.revised}
    day_published_at: dict[date, str] = {}
    for day, (builds_text, newest, flags) in index.items():
        day_published_at[day] = newest
        for hour, build, flag in zip(_day_hours(day), builds_text.split(","), flags, strict=True):
            if build != "-":
                builds.setdefault(hour, build)
                if flag:
                    revised.add(hour)
    day_requests = [(read, day) for read, wanted in plan.days.items() for day in sorted(wanted) if day in index]
    hour_requests = [(read, hour) for read, wanted in plan.hours.items() for hour in sorted(wanted) if hour in builds]
    hour_requests += [
        (read, hour)
        for read, wanted in plan.days.items()
        for day in sorted(wanted)
        if day not in index
        for hour in _day_hours(day)
        if hour in builds
    ]
    day_replies, hour_replies = _fetch(client, layout, plan.slices, builds, day_requests, hour_requests)
    day_data: dict[HashRead, dict[date, dict[str, Any]]] = {}
    stale: list[tuple[HashRead, datetime]] = []
    for (read, day), fields in zip(day_requests, day_replies, strict=True):
        recorded = fields.pop(DAY_BUILDS_FIELD, None)
        if recorded is not None and recorded.decode() == index[day][0]:
            day_data.setdefault(read, {})[day] = _decoded(read, fields)
        else:
            stale += [(read, hour) for hour in _day_hours(day) if hour in builds]
    hour_data: dict[HashRead, dict[datetime, dict[str, Any]]] = {}
    for (read, hour), fields in zip(hour_requests, hour_replies, strict=True):
        hour_data.setdefault(read, {})[hour] = _decoded(read, fields)
    if stale:
        _, stale_replies = _fetch(client, layout, plan.slices, builds, [], stale)
        for (read, hour), fields in zip(stale, stale_replies, strict=True):
            hour_data.setdefault(read, {})[hour] = _decoded(read, fields)
            published_at.setdefault(hour, index[hour.date()][1])
    full_days = {day for day, (text, _, _) in index.items() if "-" not in text.split(",")}
    full_days |= {day for day in unindexed if all(hour in pointers for hour in _day_hours(day))}
    outdated, absent = definition_hours(definitions, plan.definitions)
    return Snapshot(
        published_at=published_at,
        hours=hour_data,
        days=day_data,
        day_published_at=day_published_at,
        full_days=frozenset(full_days),
        revised=frozenset(revised),
        pending=frozenset(pending),
        version=_version(index, pointers, pending),
        outdated=outdated,
        absent=absent,
    )


def read_redefined(client: redis.Redis, layout: KeyLayout, current: Mapping[str, str]) -> dict[str, list[datetime]]:
    """Per metric of ``current``: computed hours held under another definition, or without the metric.

    An hour counts as computed when some metric is recorded there (one ``{p}:definitions``
    read: no pointer is needed). For ``/health`` and ``tally status``.
    """
    days = {parse_day_field(field.decode()): value for field, value in client.hgetall(layout.definitions()).items()}
    outdated, absent = definition_hours(days, current)
    computed: set[datetime] = set()
    for day, value in days.items():
        for entries in parse_definitions_value(value).values():
            computed |= {hour for hour, entry in zip(_day_hours(day), entries, strict=True) if entry != NOT_COMPUTED}
    found = {}
    for metric in current:
        hours = outdated.get(metric, frozenset()) | (absent.get(metric, frozenset()) & computed)
        if hours:
            found[metric] = sorted(hours)
    return found


def parse_day_field(text: str) -> date:
    """Inverse of :func:`cache.keys.day_field`."""
    return date.fromisoformat(text)


def definition_hours(
    days: dict[date, bytes], current: Mapping[str, str]
) -> tuple[dict[str, frozenset[datetime]], dict[str, frozenset[datetime]]]:
    """Per metric: hours held under another definition than ``current``, and hours not holding it.

    ``days`` are ``{p}:definitions`` fields read (days without one were published
    before definitions were recorded, and count as current).
    """
    outdated: dict[str, set[datetime]] = {metric: set() for metric in current}
    absent: dict[str, set[datetime]] = {metric: set() for metric in current}
    for day, value in days.items():
        recorded = orjson.loads(value)
        hours = _day_hours(day)
        for metric, fingerprint in current.items():
            text = recorded.get(metric, recorded.get(ANY_METRIC, NOT_COMPUTED))
            if text in (fingerprint, UNRECORDED):  # the usual day: one entry, the current one
                continue
            entries = text.split(",") if "," in text else [text] * len(hours)
            for hour, entry in zip(hours, entries, strict=True):
                if entry == NOT_COMPUTED:
                    absent[metric].add(hour)
                elif entry not in (fingerprint, UNRECORDED):
                    outdated[metric].add(hour)
    return (
        {metric: frozenset(hours) for metric, hours in outdated.items() if hours},
        {metric: frozenset(hours) for metric, hours in absent.items() if hours},
    )


def _version(index: dict[date, DayIndexEntry], pointers: dict[datetime, Pointer], pending: set[datetime]) -> str:
    """A digest of every build the response covers and of the pending hours.

    It changes exactly when one of the builds does, or an hour becomes (or stops
    being) pending, which changes the points' ``complete``.
    """
    digest = hashlib.sha256()
    for day in sorted(index):
        digest.update(f"{day_field(day)}={index[day][0]};".encode())
    for hour in sorted(pointers):
        digest.update(f"{hour_field(hour)}={pointers[hour].build};".encode())
    for hour in sorted(pending):
        digest.update(f"pending:{hour_field(hour)};".encode())
    return digest.hexdigest()[:20]


def _read_index_and_pointers(
    client: redis.Redis,
    layout: KeyLayout,
    days: Sequence[date],
    hours: Sequence[datetime],
    definition_days: Sequence[date] = (),
) -> tuple[dict[date, DayIndexEntry], dict[datetime, Pointer], set[datetime], dict[date, bytes]]:
    """The day index entries of ``days``, the pointers of ``hours``, every pending hour, and definitions.

    The ``{p}:definitions`` fields of ``definition_days`` are read in the same pipeline.
    """
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(layout.meta())
        pipe.hkeys(layout.pending())  # usually empty: a run marks hours only until it publishes them
        if days:
            pipe.hmget(layout.day_index(), [day_field(day) for day in days])
        if hours:
            pipe.hmget(layout.pointer(), [hour_field(hour) for hour in hours])
        if definition_days:
            pipe.hmget(layout.definitions(), [day_field(day) for day in definition_days])
        replies = pipe.execute()
    if not replies.pop(0):
        # Never answer zeros or nulls from an empty cache: say it is cold.
        raise CacheColdError("nothing is published in Redis yet (or it restarted empty); run `tally rehydrate`")
    pending = {parse_hour_field(field.decode()) for field in replies.pop(0)}
    index_reply = replies.pop(0) if days else []
    pointer_reply = replies.pop(0) if hours else []
    definitions_reply = replies.pop(0) if definition_days else []
    index = {day: parse_day_index_value(v.decode()) for day, v in zip(days, index_reply, strict=True) if v}
    pointers = {hour: _pointer(v) for hour, v in zip(hours, pointer_reply, strict=True) if v}
    definitions = {day: v for day, v in zip(definition_days, definitions_reply, strict=True) if v}
    return index, pointers, pending, definitions


def _day_hours(day: date) -> list[datetime]:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [midnight + timedelta(hours=h) for h in range(24)]


def _fetch(
    client: redis.Redis,
    layout: KeyLayout,
    slices: Sequence[str] | None,
    builds: dict[datetime, str],
    day_requests: Sequence[tuple[HashRead, date]],
    hour_requests: Sequence[tuple[HashRead, datetime]],
) -> tuple[list[dict[str, bytes]], list[dict[str, bytes]]]:
    """One pipeline: each day hash (with its @builds) and each hour hash, as field dicts."""
    if not day_requests and not hour_requests:
        return [], []
    day_fields = None if slices is None else [DAY_BUILDS_FIELD, *slices]
    with client.pipeline(transaction=False) as pipe:
        for read, day in day_requests:
            key = (layout.day_values if read.source == "values" else layout.day_sketches)(day_field(day), read.metric)
            pipe.hgetall(key) if day_fields is None else pipe.hmget(key, day_fields)
        for read, hour in hour_requests:
            key = _hash_key(layout, read, builds[hour], hour)
            pipe.hgetall(key) if slices is None else pipe.hmget(key, list(slices))
        replies = pipe.execute()
    fields = [_fields(reply, day_fields if i < len(day_requests) else slices) for i, reply in enumerate(replies)]
    return fields[: len(day_requests)], fields[len(day_requests) :]


def _decoded(read: HashRead, fields: dict[str, bytes]) -> dict[str, Any]:
    if read.source == "values":
        return {k: float(v) for k, v in fields.items()}
    return fields


def _hash_key(layout: KeyLayout, read: HashRead, build: str, hour: datetime) -> str:
    if read.source == "values":
        return layout.values(build, hour_field(hour), read.metric)
    return layout.sketches(build, hour_field(hour), read.metric)


def _fields(reply: Any, slices: Sequence[str] | None) -> dict[str, bytes]:
    """Field -> raw value, from an HGETALL dict or an HMGET list."""
    if slices is None:
        return {key.decode(): value for key, value in reply.items()}
    return {s: value for s, value in zip(slices, reply, strict=True) if value is not None}


def read_runs(client: redis.Redis, layout: KeyLayout, hours: Sequence[datetime]) -> list[dict[str, Any]]:
    """The live build's manifest (run statistics included) of every computed hour, in order."""
    pointers = read_pointers(client, layout, hours)
    computed = [hour for hour in hours if hour in pointers]
    with client.pipeline(transaction=False) as pipe:
        for hour in computed:
            pipe.get(layout.manifest(pointers[hour].build, hour_field(hour)))
        manifests = pipe.execute() if computed else []
    runs = []
    for hour, manifest in zip(computed, manifests, strict=True):
        document = orjson.loads(manifest) if manifest else {}
        runs.append(
            {
                "hour": hour,
                "build": pointers[hour].build,
                "published_at": pointers[hour].published_at,
                "stats": document.get("stats", {}),
            }
        )
    return runs
