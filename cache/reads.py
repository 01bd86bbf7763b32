"""Reading what is published, for every reader: the API, ``tally status`` and the health checks.

Pointers, the meta hash, pending marks, recorded definitions and run manifests, as
plain data. No HTTP here (``tally status`` must start without FastAPI); the API's
range reads, which need its query plan, are :mod:`dashboard_api.store`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache.client import text
from cache.keys import ANY_METRIC, NOT_COMPUTED, UNRECORDED, KeyLayout, parse_definitions_value
from tally.core.layout import hour_field, parse_day_field, parse_hour_field

# A {p}:days entry: (builds text, newest published_at, revised flag per hour).
DayIndexEntry = tuple[str, str, tuple[bool, ...]]
# Short, so a dead Redis costs a request about a second, not a hung worker.
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 2.0
# One immediate retry replaces a pooled connection that died (e.g. Redis restarted).
RETRY = Retry(NoBackoff(), retries=1)


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
    return {hour: pointer_of(value) for hour, value in zip(hours, raw, strict=True) if value}


def newest_computed_hours(client: redis.Redis, layout: KeyLayout, count: int) -> list[datetime]:
    """The ``count`` newest hours that have a live build, oldest first."""
    hours = sorted(parse_hour_field(text(field)) for field in client.hkeys(layout.pointer()))
    return hours[-count:] if count > 0 else []


def pointer_of(value: bytes | str) -> Pointer:
    document = orjson.loads(value)  # thousands per request: the stdlib parser shows up in profiles
    return Pointer(build=document["build"], published_at=document["published_at"], revised="revised" in document)


def read_redefined(client: redis.Redis, layout: KeyLayout, current: Mapping[str, str]) -> dict[str, list[datetime]]:
    """Per metric of ``current``: computed hours held under another definition, or without the metric.

    An hour counts as computed when some metric is recorded there (one ``{p}:definitions``
    read: no pointer is needed). For ``/health`` and ``tally status``.
    """
    days = {parse_day_field(text(field)): value for field, value in client.hgetall(layout.definitions()).items()}
    outdated, absent = definition_hours(days, current)
    computed: set[datetime] = set()
    for day, value in days.items():
        for entries in parse_definitions_value(value).values():
            computed |= {hour for hour, entry in zip(day_hours(day), entries, strict=True) if entry != NOT_COMPUTED}
    found = {}
    for metric in current:
        hours = outdated.get(metric, frozenset()) | (absent.get(metric, frozenset()) & computed)
        if hours:
            found[metric] = sorted(hours)
    return found


def definition_hours(
    days: Mapping[date, bytes | str], current: Mapping[str, str]
) -> tuple[dict[str, frozenset[datetime]], dict[str, frozenset[datetime]]]:
    """Per metric: hours held under another definition than ``current``, and hours not holding it.

    ``days`` are ``{p}:definitions`` fields read (days without one were published
    before definitions were recorded, and count as current).
    """
    outdated: dict[str, set[datetime]] = {metric: set() for metric in current}
    absent: dict[str, set[datetime]] = {metric: set() for metric in current}
    for day, value in days.items():
        recorded = orjson.loads(value)
        hours = day_hours(day)
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


@lru_cache(maxsize=4096)
def day_hours(day: date) -> tuple[datetime, ...]:
    """The 24 UTC hours of ``day`` (cached: a long read asks for the same days many times)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return tuple(midnight + timedelta(hours=h) for h in range(24))
