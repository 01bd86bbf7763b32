"""``GET /v1/events``: the publish events as server-sent events, replayable from an id.

Each event is ``id: <stream id>``, ``event: <type>`` and one ``data:`` line of JSON
(:meth:`cache.events.Event.document` plus ``id``). A client that reconnects with
``Last-Event-ID`` (browsers do it by themselves) or ``?since=<id>`` first gets
every event after that id still in the stream, then live ones, so it misses
nothing; if the entry it names is no longer there (trimmed, or Redis lost its
data) it gets one ``reset`` event instead: reload everything, then resume from the
``reset``'s id. ``?metrics=a,b`` keeps the events that concern one of them (an event
without metrics, a change of pending marks, concerns every metric). A comment line
every ``TALLY_EVENTS_KEEPALIVE_SECONDS`` (15) keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Collection
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Header, Query, Request
from fastapi.responses import StreamingResponse

from cache.client import text
from cache.events import Event, parse_event
from cache.keys import KeyLayout
from dashboard_api.deps import LayoutDep, SettingsDep, SpecDep
from dashboard_api.errors import ApiError
from dashboard_api.event_hub import EventHub, KeepAlive, Reset, event_frame, reset_frame, stream_id_key
from dashboard_api.plan import stored_parts
from tally.core.spec import MetricSpec

STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
REPLAY_PAGE = 500  # stream entries read per XRANGE while replaying
READY_SECONDS = 2.0  # how long a new subscriber waits for the hub's first read of the stream
EVENT_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering either


async def event_stream(
    request: Request,
    spec: SpecDep,
    settings: SettingsDep,
    layout: LayoutDep,
    since: Annotated[
        str | None, Query(description="Replay the events after this stream id (an earlier event's `id`).")
    ] = None,
    metrics: Annotated[
        str | None, Query(description="Comma-separated metric names: only events that concern one of them.")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Sent by browsers on reconnect; wins over since.")] = None,
) -> StreamingResponse:
    resume = _stream_id(last_event_id, "Last-Event-ID") or _stream_id(since, "since")
    wanted = _metrics(spec, metrics)
    hub: EventHub = request.app.state.event_hub
    if not await hub.wait_ready(READY_SECONDS):
        raise ApiError("redis_unavailable", "the publish event stream is unreachable (Redis is down); retry later")
    keepalive = settings.events_keepalive_seconds
    return StreamingResponse(
        _frames(hub, layout, resume, wanted, keepalive), media_type="text/event-stream", headers=EVENT_HEADERS
    )


async def _frames(
    hub: EventHub, layout: KeyLayout, resume: str | None, wanted: Collection[str] | None, keepalive: float
) -> AsyncIterator[str]:
    async with hub.subscribe() as subscription:
        last = resume
        if resume is None:
            # An id without data sets the client's Last-Event-ID: a stream dropped before its
            # first event resumes from here instead of reloading (the queue holds what follows).
            yield f"retry: 3000\nid: {hub.last_id}\n: connected to {layout.events()}\n\n"
        else:
            yield f"retry: 3000\n: connected to {layout.events()}\n\n"
        if resume is not None:
            try:
                async for frame, replayed in _replay(hub.client(), layout, resume, wanted):
                    last = replayed
                    if frame:
                        yield frame
            except (aioredis.RedisError, OSError):
                last = hub.last_id
                yield reset_frame(Reset("the event stream was unreachable", hub.last_id))
        written = time.monotonic()
        while True:
            item = await subscription.queue.get()
            if isinstance(item, KeepAlive):
                yield ": keep-alive\n\n"
                written = time.monotonic()
                continue
            if isinstance(item, Reset):
                last = item.last_id
                yield reset_frame(item)
                if subscription.dropped:
                    return
                continue
            if last is not None and stream_id_key(item.id) <= stream_id_key(last):
                continue  # already replayed
            if _concerns(item.event, wanted):
                yield item.frame
                written = time.monotonic()
            elif time.monotonic() - written >= keepalive:
                # Others' events keep the hub from sending keep-alives: a filtered stream sends its own.
                yield ": keep-alive\n\n"
                written = time.monotonic()


async def _replay(
    client: aioredis.Redis, layout: KeyLayout, resume: str, wanted: Collection[str] | None
) -> AsyncIterator[tuple[str, str]]:
    """(frame, id) for each event after ``resume``; a reset first if ``resume`` is gone from the stream."""
    key = layout.events()
    if stream_id_key(resume) != (0, 0) and not await client.xrange(key, min=resume, max=resume):
        newest: list[Any] = await client.xrevrange(key, count=1) or []
        last = text(newest[0][0]) if newest else "0-0"
        yield reset_frame(Reset("the events after this id are no longer kept", last)), last
        return
    after = resume
    while True:
        entries: list[Any] = await client.xrange(key, min=f"({after}", max="+", count=REPLAY_PAGE) or []
        for entry_id, fields in entries:
            after = text(entry_id)
            event = parse_event(fields)
            if _concerns(event, wanted):
                yield event_frame(after, event), after
            else:
                yield "", after
        if len(entries) < REPLAY_PAGE:
            return


def _concerns(event: Event, wanted: Collection[str] | None) -> bool:
    return wanted is None or not event.metrics or any(name in wanted for name in event.metrics)


def _stream_id(value: str | None, name: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not STREAM_ID.fullmatch(value):
        raise ApiError("bad_parameter", f"{name} {value[:40]!r} is not an event id (like 1764547200000-0)")
    return value if "-" in value else f"{value}-0"


def _metrics(spec: MetricSpec, value: str | None) -> frozenset[str] | None:
    """The stored metrics the filter concerns: the names given, a ratio by its parts."""
    if value is None or not value.strip():
        return None
    names = sorted({name.strip() for name in value.split(",") if name.strip()})
    stored: set[str] = set()
    for name in names:
        metric = spec.get(name)
        if metric is None:
            raise ApiError("unknown_metric", f"metrics: no metric named {name[:80]!r}; GET /v1/metrics lists them")
        stored.update(part.name for part, _ in stored_parts(spec, metric))
    return frozenset(stored)
