"""Reading a query's published hours from Redis (the reads every reader shares are :mod:`cache.reads`).

A range is resolved in one pipeline that reads the day index (whole UTC days)
and the pointer hash (the remaining hours); a publish switches both in one
MULTI/EXEC, so a response never mixes two publishes. A second pipeline reads the
day aggregates and hourly hashes those builds name (see :func:`read_snapshot`).
Connection failures propagate as redis-py errors; the app turns them into 503s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import redis

try:  # what redis-py's hiredis reader answers while no whole reply is buffered
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # another redis-py: read every reply through read_response
    _NOT_ENOUGH_DATA = None

from cache.keys import DAY_BUILDS_FIELD, HOURS_PER_DAY, META_HOURS_FROM, KeyLayout, parse_day_index_value
from cache.reads import DayIndexEntry, Pointer, day_hours, definition_hours, pointer_of
from cache.weeks import WEEK_DAYS_FIELD, week_days, week_days_text
from dashboard_api.plan import HashRead, ReadPlan, Snapshot
from tally.core.layout import day_field, hour_field, parse_day_field, parse_hour_field


class CacheColdError(RuntimeError):
    """Nothing is published under the prefix: Redis is empty (fresh, or restarted)."""


class BeyondHourTierError(RuntimeError):
    """The read needs hours of a day that Redis keeps only as its day aggregate (cache.tiers)."""

    def __init__(self, hours_from: date) -> None:
        self.hours_from = hours_from
        super().__init__(
            f"hours before {day_field(hours_from)}T00:00:00Z are kept only as whole UTC days; "
            "ask for grain=day, week or month in UTC (or a range starting at or after that hour)"
        )


def read_snapshot(client: redis.Redis, layout: KeyLayout, plan: ReadPlan) -> Snapshot:
    """Read what ``plan`` needs in two round trips (more only if an aggregate is stale).

    1. The day index for the whole UTC days (one field per day) and the pointers
       of the remaining edge hours, in one pipeline: a consistent snapshot, since
       a publish switches both in one MULTI/EXEC.
    2. Week aggregates, day aggregates, and the hourly hashes of computed edge hours.
    3. Only for a week whose ``@days`` differ from the index: its days' hashes; and
       for a day whose aggregate was not built from the live builds (its ``@builds``
       differs from the index): that day's hourly hashes.
    """
    week_reads = {read: sorted(wanted) for read, wanted in plan.weeks.items()}
    days = sorted(
        {day for wanted in plan.days.values() for day in wanted}
        | {day for wanted in week_reads.values() for monday in wanted for day in week_days(monday)}
    )
    edge_hours = sorted({hour for wanted in plan.hours.values() for hour in wanted})
    # Whole UTC days all of whose hours are read one by one (an hourly series): their
    # builds come from one day index field, not 24 pointers (the same switch writes both).
    hour_days = _whole_days(edge_hours, set(days))
    pointer_hours = [hour for hour in edge_hours if hour.date() not in hour_days]
    definition_days = sorted(plan.all_days) if plan.definitions else []
    index, pointers, pending, definitions, kept_from = _read_index_and_pointers(
        client, layout, [*days, *sorted(hour_days)], pointer_hours, definition_days
    )
    _check_hour_tier(kept_from, edge_hours)
    # A day without an index entry has no computed hour, or was published before the
    # index existed: its pointers say which (one more round trip, only then).
    unindexed = [day for day in [*days, *sorted(hour_days)] if day not in index]
    if unindexed:
        # (A day of the day tier without an index entry was expired or never computed: not an error.)
        _, more, _, _, _ = _read_index_and_pointers(client, layout, [], [h for d in unindexed for h in day_hours(d)])
        pointers.update(more)
    builds = {hour: pointer.build for hour, pointer in pointers.items()}
    published_at = {hour: pointer.published_at for hour, pointer in pointers.items()}
    revised = {hour for hour, pointer in pointers.items() if pointer.revised}
    day_published_at: dict[date, str] = {}
    for day, (builds_text, newest, flags) in index.items():
        day_published_at[day] = newest
        computed = day in hour_days  # read hour by hour: its computed hours are those it names
        for hour, build, flag in zip(day_hours(day), builds_text.split(","), flags, strict=True):
            if build != "-":
                builds.setdefault(hour, build)
                if computed:
                    # The day's newest publish stands for each hour's: only as_of (their
                    # maximum, the same either way) reads the time itself.
                    published_at.setdefault(hour, newest)
                if flag:
                    revised.add(hour)
    # Only a week all of whose days are computed has an aggregate; the others are read by their days.
    week_requests: list[tuple[HashRead, date]] = []
    wanted_days = {read: set(wanted) for read, wanted in plan.days.items()}
    for read, mondays in week_reads.items():
        for monday in mondays:
            if all(day in index for day in week_days(monday)):
                week_requests.append((read, monday))
            else:
                wanted_days.setdefault(read, set()).update(week_days(monday))
    day_requests = [(read, day) for read, wanted in wanted_days.items() for day in sorted(wanted) if day in index]
    hour_requests = [(read, hour) for read, wanted in plan.hours.items() for hour in sorted(wanted) if hour in builds]
    hour_requests += [
        (read, hour)
        for read, wanted in wanted_days.items()
        for day in sorted(wanted)
        if day not in index
        for hour in day_hours(day)
        if hour in builds
    ]
    week_replies, day_replies, hour_replies = _fetch(
        client, layout, plan.slices, builds, week_requests, day_requests, hour_requests
    )
    week_data: dict[HashRead, dict[date, dict[str, Any]]] = {}
    stale_weeks: list[tuple[HashRead, date]] = []
    for (read, monday), fields in zip(week_requests, week_replies, strict=True):
        recorded = fields.pop(WEEK_DAYS_FIELD, None)
        expected = week_days_text([index[day][0] for day in week_days(monday)])
        if recorded is not None and recorded.decode() == expected:
            week_data.setdefault(read, {})[monday] = fields
        else:
            stale_weeks += [(read, day) for day in week_days(monday)]
    if stale_weeks:
        _, more_days, _ = _fetch(client, layout, plan.slices, builds, [], stale_weeks, [])
        day_requests += stale_weeks
        day_replies += more_days
    day_data: dict[HashRead, dict[date, dict[str, Any]]] = {}
    stale: list[tuple[HashRead, datetime]] = []
    for (read, day), fields in zip(day_requests, day_replies, strict=True):
        recorded = fields.pop(DAY_BUILDS_FIELD, None)
        if recorded is not None and recorded.decode() == index[day][0]:
            day_data.setdefault(read, {})[day] = _decoded(read, fields)
        else:
            stale += [(read, hour) for hour in day_hours(day) if hour in builds]
    hour_data: dict[HashRead, dict[datetime, dict[str, Any]]] = {}
    for (read, hour), fields in zip(hour_requests, hour_replies, strict=True):
        hour_data.setdefault(read, {})[hour] = _decoded(read, fields)
    if stale:
        _check_hour_tier(kept_from, [hour for _, hour in stale])
        _, _, stale_replies = _fetch(client, layout, plan.slices, builds, [], [], stale)
        for (read, hour), fields in zip(stale, stale_replies, strict=True):
            hour_data.setdefault(read, {})[hour] = _decoded(read, fields)
            published_at.setdefault(hour, index[hour.date()][1])
    full_days = {day for day, (text, _, _) in index.items() if "-" not in text.split(",")}
    full_days |= {day for day in unindexed if all(hour in pointers for hour in day_hours(day))}
    outdated, absent = definition_hours(definitions, plan.definitions)
    return Snapshot(
        published_at=published_at,
        hours=hour_data,
        days=day_data,
        weeks=week_data,
        day_published_at=day_published_at,
        full_days=frozenset(full_days),
        revised=frozenset(revised),
        pending=frozenset(pending),
        version=_version(index, pointers, pending),
        outdated=outdated,
        absent=absent,
    )


def _whole_days(hours: Sequence[datetime], exclude: set[date]) -> set[date]:
    """The UTC days (other than ``exclude``) all 24 of whose hours are among ``hours`` (sorted, distinct)."""
    counts: dict[date, int] = {}
    for hour in hours:
        day = hour.date()
        counts[day] = counts.get(day, 0) + 1
    return {day for day, count in counts.items() if count == HOURS_PER_DAY and day not in exclude}


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


def pipelined(client: redis.Redis, commands: Sequence[Sequence[str]]) -> list[Any]:
    """Send ``commands`` in one write and return their raw replies, in order.

    What ``client.pipeline(transaction=False)`` does, without its per-command
    queueing and reply callbacks, which cost more than Redis spends on the
    command: an hourly week is 170 commands. Replies are as Redis sends them (an
    HGETALL is a map in RESP3, redis-py's default, and a flat list in RESP2: :func:`_fields`).
    Connection failures are retried as the client's own commands are; a reply
    left unread (an error reply raises mid-way) would answer the next command on
    the connection, so any failure closes it.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        packed = _packed(commands)

        def attempt() -> list[Any]:
            connection.send_packed_command(packed)
            return _read_replies(connection, len(commands))

        return connection.retry.call_with_retry(attempt, lambda _error: connection.disconnect())
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def _packed(commands: Sequence[Sequence[str]]) -> list[bytes]:
    """The commands in RESP, as one buffer (redis-py packs and chunks each command with more Python calls)."""
    parts = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg.encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return [b"".join(parts)]  # one write: send_packed_command takes a list of buffers


def _read_replies(connection: Any, count: int) -> list[Any]:
    """``count`` replies; those already buffered in hiredis's reader are taken from it directly.

    ``connection.read_response()`` reads the socket (with its timeout and error
    handling) whenever the buffer holds no whole reply; in between, one ``gets()``
    per reply replaces several layers of Python calls, and what the parser would do
    with a reply is done here: errors raised, push messages handed to it. Without
    hiredis (or a redis-py that reads otherwise) every reply goes through ``read_response``.
    """
    parser = connection._parser
    fast = _NOT_ENOUGH_DATA is not None and hasattr(parser, "handle_push_response")
    push_type = getattr(parser, "_hiredis_PushNotificationType", None)
    replies: list[Any] = []
    while len(replies) < count:
        reader = getattr(parser, "_reader", None) if fast else None
        reply = _NOT_ENOUGH_DATA if reader is None else reader.gets()
        if reply is _NOT_ENOUGH_DATA:
            replies.append(connection.read_response())
        elif push_type is not None and isinstance(reply, push_type):
            parser.handle_push_response(reply)  # not a reply (RESP3 push): as the parser does
        elif isinstance(reply, (redis.ResponseError, redis.ConnectionError)):
            raise reply
        elif type(reply) is list and reply and isinstance(reply[0], redis.ConnectionError):
            raise reply[0]
        else:
            replies.append(reply)
    return replies


def _check_hour_tier(kept_from: date | None, hours: Sequence[datetime]) -> None:
    """Refuse a read that needs an hour Redis no longer keeps apart from its day."""
    if kept_from is not None and any(hour.date() < kept_from for hour in hours):
        raise BeyondHourTierError(kept_from)


def _read_index_and_pointers(
    client: redis.Redis,
    layout: KeyLayout,
    days: Sequence[date],
    hours: Sequence[datetime],
    definition_days: Sequence[date] = (),
) -> tuple[dict[date, DayIndexEntry], dict[datetime, Pointer], set[datetime], dict[date, bytes], date | None]:
    """The day index entries of ``days``, the pointers of ``hours``, every pending hour, definitions, tier.

    The ``{p}:definitions`` fields of ``definition_days`` are read in the same
    pipeline, and the first day whose hours are kept (``{p}:meta`` ``hours_from``):
    a move switches it with the pointers it drops.
    """
    commands: list[tuple[str, ...]] = [
        ("EXISTS", layout.meta()),
        ("HGET", layout.meta(), META_HOURS_FROM),
        ("HKEYS", layout.pending()),  # usually empty: a run marks hours only until it publishes them
    ]
    if days:
        commands.append(("HMGET", layout.day_index(), *[day_field(day) for day in days]))
    if hours:
        commands.append(("HMGET", layout.pointer(), *[hour_field(hour) for hour in hours]))
    if definition_days:
        commands.append(("HMGET", layout.definitions(), *[day_field(day) for day in definition_days]))
    replies = pipelined(client, commands)
    if not replies.pop(0):
        # Never answer zeros or nulls from an empty cache: say it is cold.
        raise CacheColdError("nothing is published in Redis yet (or it restarted empty); run `tally rehydrate`")
    kept_from_text = replies.pop(0)
    kept_from = parse_day_field(kept_from_text.decode()) if kept_from_text else None
    pending = {parse_hour_field(field.decode()) for field in replies.pop(0)}
    index_reply = replies.pop(0) if days else []
    pointer_reply = replies.pop(0) if hours else []
    definitions_reply = replies.pop(0) if definition_days else []
    index = {day: parse_day_index_value(v.decode()) for day, v in zip(days, index_reply, strict=True) if v}
    pointers = {hour: pointer_of(v) for hour, v in zip(hours, pointer_reply, strict=True) if v}
    definitions = {day: v for day, v in zip(definition_days, definitions_reply, strict=True) if v}
    return index, pointers, pending, definitions, kept_from


def _fetch(
    client: redis.Redis,
    layout: KeyLayout,
    slices: Sequence[str] | None,
    builds: dict[datetime, str],
    week_requests: Sequence[tuple[HashRead, date]],
    day_requests: Sequence[tuple[HashRead, date]],
    hour_requests: Sequence[tuple[HashRead, datetime]],
) -> tuple[list[dict[str, bytes]], list[dict[str, bytes]], list[dict[str, bytes]]]:
    """One pipeline: each week hash (with its @days), day hash (with its @builds) and hour hash, as field dicts."""
    if not week_requests and not day_requests and not hour_requests:
        return [], [], []
    week_fields = None if slices is None else [WEEK_DAYS_FIELD, *slices]
    day_fields = None if slices is None else [DAY_BUILDS_FIELD, *slices]
    commands: list[tuple[str, ...]] = []
    for read, monday in week_requests:
        key = layout.week_sketches(day_field(monday), read.metric)
        commands.append(("HGETALL", key) if week_fields is None else ("HMGET", key, *week_fields))
    for read, day in day_requests:
        key = (layout.day_values if read.source == "values" else layout.day_sketches)(day_field(day), read.metric)
        commands.append(("HGETALL", key) if day_fields is None else ("HMGET", key, *day_fields))
    for read, hour in hour_requests:
        key = _hash_key(layout, read, builds[hour], hour)
        commands.append(("HGETALL", key) if slices is None else ("HMGET", key, *slices))
    replies = pipelined(client, commands)
    weeks, days = len(week_requests), len(day_requests)
    return (
        [_fields(reply, week_fields) for reply in replies[:weeks]],
        [_fields(reply, day_fields) for reply in replies[weeks : weeks + days]],
        [_fields(reply, slices) for reply in replies[weeks + days :]],
    )


def _decoded(read: HashRead, fields: dict[str, bytes]) -> dict[str, Any]:
    if read.source == "values":
        return {k: float(v) for k, v in fields.items()}
    return fields


def _hash_key(layout: KeyLayout, read: HashRead, build: str, hour: datetime) -> str:
    if read.source == "values":
        return layout.values(build, hour_field(hour), read.metric)
    return layout.sketches(build, hour_field(hour), read.metric)


def _fields(reply: Any, slices: Sequence[str] | None) -> dict[str, bytes]:
    """Field -> raw value, from an HGETALL reply (RESP2: a flat field, value list) or an HMGET list."""
    if slices is None:
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        return {key.decode(): value for key, value in pairs}
    return {s: value for s, value in zip(slices, reply, strict=True) if value is not None}
