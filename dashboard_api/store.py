"""Reading published hours from Redis: the only module of the API that talks to Redis.

A range is read in two round trips: one HMGET of the pointer hash resolves every
hour to its live build at once (so a response never mixes two publishes of the
pointer), then one pipeline reads the needed hashes of those builds. Connection
failures propagate as redis-py errors; the app turns them into 503s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache.keys import KeyLayout, hour_field
from dashboard_api.query import HashRead, Snapshot

# Short, so a dead Redis costs a request about a second, not a hung worker.
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 2.0
# One immediate retry replaces a pooled connection that died (e.g. Redis restarted).
RETRY = Retry(NoBackoff(), retries=1)


@dataclass(frozen=True)
class Pointer:
    build: str
    published_at: str


@dataclass(frozen=True)
class Meta:
    newest_hour: datetime | None
    published_at: str | None


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
    newest, published_at = client.hmget(layout.meta(), ["newest_hour", "published_at"])
    return Meta(
        newest_hour=parse_hour_field(newest.decode()) if newest else None,
        published_at=published_at.decode() if published_at else None,
    )


def read_pointers(client: redis.Redis, layout: KeyLayout, hours: Sequence[datetime]) -> dict[datetime, Pointer]:
    """The live build of every computed hour among ``hours`` (others are absent)."""
    if not hours:
        return {}
    raw = client.hmget(layout.pointer(), [hour_field(hour) for hour in hours])
    return {hour: _pointer(value) for hour, value in zip(hours, raw, strict=True) if value}


def _pointer(value: bytes) -> Pointer:
    document = json.loads(value)
    return Pointer(build=document["build"], published_at=document["published_at"])


def read_snapshot(
    client: redis.Redis,
    layout: KeyLayout,
    hours: Sequence[datetime],
    reads: Sequence[HashRead],
    slices: Sequence[str] | None,
) -> Snapshot:
    """Read ``reads`` for every computed hour: only ``slices``, or whole hashes if None."""
    pointers = read_pointers(client, layout, hours)
    plan = [(read, hour, pointer) for read in reads for hour, pointer in pointers.items()]
    with client.pipeline(transaction=False) as pipe:
        for read, hour, pointer in plan:
            key = _hash_key(layout, read, pointer.build, hour)
            if slices is None:
                pipe.hgetall(key)
            else:
                pipe.hmget(key, list(slices))
        replies = pipe.execute() if plan else []
    values: dict[str, dict[datetime, dict[str, float]]] = {}
    sketches: dict[str, dict[datetime, dict[str, bytes]]] = {}
    # Every computed hour gets an entry, even an empty one: empty means 0, absent unknown.
    for (read, hour, _), reply in zip(plan, replies, strict=True):
        fields = _fields(reply, slices)
        if read.source == "values":
            values.setdefault(read.metric, {})[hour] = {k: float(v) for k, v in fields.items()}
        else:
            sketches.setdefault(read.metric, {})[hour] = fields
    published_at = {hour: pointer.published_at for hour, pointer in pointers.items()}
    return Snapshot(values=values, sketches=sketches, published_at=published_at)


def _hash_key(layout: KeyLayout, read: HashRead, build: str, hour: datetime) -> str:
    if read.source == "values":
        return layout.values(build, hour_field(hour), read.metric)
    return layout.sketches(build, hour_field(hour), read.metric)


def _fields(reply: Any, slices: Sequence[str] | None) -> dict[str, bytes]:
    """Slice id -> raw field value, from an HGETALL dict or an HMGET list."""
    if slices is None:
        return {key.decode(): value for key, value in reply.items()}
    return {s: value for s, value in zip(slices, reply, strict=True) if value is not None}
