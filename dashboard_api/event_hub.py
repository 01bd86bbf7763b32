"""One reader of the publish event stream per API process, fanning out to every SSE subscriber.

Each ``GET /v1/events`` connection is an asyncio task waiting on its own queue;
a single background task (:meth:`EventHub.run`) blocks on ``XREAD`` of
``{p}:events`` and puts each new entry on every queue. So 500 idle dashboards
cost 500 parked coroutines and one Redis connection, not 500 blocked Redis
connections, and no request thread (series requests keep the thread pool).

When Redis fails (down, restarted) the reader backs off and reconnects, then
tells every subscriber ``reset``: events may have been lost meanwhile (a Redis
without persistence comes back empty). A subscriber that falls too far behind
(its queue full) gets ``reset`` too and is dropped. Nothing here parses HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from cache.client import text
from cache.events import Event, parse_event
from cache.keys import KeyLayout

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # events a slow subscriber may lag behind before it is reset
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # backoff after a Redis failure, the last repeated


@dataclass(frozen=True)
class Reset:
    """The subscriber may have missed events: it must reload. ``last_id``: where to resume after."""

    reason: str
    last_id: str


@dataclass(frozen=True)
class Published:
    """A stream entry, with its SSE frame written once for every subscriber."""

    id: str
    event: Event
    frame: str


@dataclass(frozen=True)
class KeepAlive:
    """Nothing was published for a keep-alive period: every stream writes a comment line."""


KEEP_ALIVE = KeepAlive()
Item = Published | Reset | KeepAlive


def event_frame(entry_id: str, event: Event) -> str:
    """The SSE frame of a stream entry: ``id``, ``event`` (its type) and one ``data`` line of JSON."""
    data = json.dumps({"id": entry_id, **event.document()}, separators=(",", ":"))
    return f"id: {entry_id}\nevent: {event.type}\ndata: {data}\n\n"


def reset_frame(reset: Reset) -> str:
    data = json.dumps({"id": reset.last_id, "type": "reset", "reason": reset.reason}, separators=(",", ":"))
    return f"id: {reset.last_id}\nevent: reset\ndata: {data}\n\n"


@dataclass(eq=False)  # each subscription is its own (hashed by identity in the hub's set)
class Subscription:
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


async def cancel_until_done(task: asyncio.Task[None], every: float = 0.5) -> None:
    """Cancel ``task`` and wait for it to end, cancelling it again every ``every`` seconds.

    redis-py's asyncio client can swallow a cancellation that lands inside a
    blocking read (redis/redis-py#2028): the reader then went on reading, and a
    single ``cancel()`` followed by ``await task`` waited for ever (an API that never
    shut down; a test that hung until its timeout).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error", task.get_name(), exc_info=task.exception())


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream id's order: ``<ms>-<seq>`` compared as numbers."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class EventHub:
    """``keepalive``: seconds of silence after which every stream gets a comment line.

    The hub's own XREAD waits that long, and each time it comes back empty every queue
    gets :data:`KEEP_ALIVE`: one timer for all subscribers, not one per subscriber.
    """

    def __init__(self, url: str, layout: KeyLayout, keepalive: float = 15.0) -> None:
        self._url = url
        self._layout = layout
        self.keepalive = keepalive
        self._subscribers: set[Subscription] = set()
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set while the reader is connected and knows the stream's end
        self.last_id = "0-0"  # the newest entry seen (the stream's end when the reader started)
        self._stopping = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def client(self) -> aioredis.Redis:
        """The hub's async Redis client (for a subscriber's replay, which must not wait on the thread pool)."""
        if self._client is None:
            # The socket waits longer than a blocking XREAD does.
            self._client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=1.0, socket_timeout=self.keepalive + 10.0
            )
        return self._client

    async def wait_ready(self, seconds: float) -> bool:
        """Whether the reader is (or within ``seconds`` becomes) connected: a subscriber's events reach it."""
        if self._task is None:
            self.start()
        try:
            await asyncio.wait_for(self._ready.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="tally-event-hub")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        self._ready.clear()
        if task is not None:
            await cancel_until_done(task)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A queue that gets every event from now on (register before replaying, so none falls between)."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def run(self) -> None:
        failures = 0
        started = False
        while not self._stopping:  # (besides cancellation, which a blocking read can swallow)
            try:
                client = self.client()
                if not started:
                    newest: list[Any] = await client.xrevrange(self._layout.events(), count=1) or []
                    self.last_id = text(newest[0][0]) if newest else "0-0"
                    if failures:  # the reader was down: whoever listened may have missed events
                        self._broadcast(Reset("the event stream was unreachable", self.last_id))
                    started, failures = True, 0
                    self._ready.set()
                block = max(1, int(self.keepalive * 1000))
                replies: Any = await client.xread({self._layout.events(): self.last_id}, block=block)
                if not replies:
                    self._broadcast(KEEP_ALIVE)
                for _, entries in replies or []:
                    for entry_id, fields in entries:
                        self.last_id = text(entry_id)
                        event = parse_event(fields)
                        # Formatted once here: at 500 subscribers a frame per subscriber was most of a fan-out.
                        self._broadcast(Published(self.last_id, event, event_frame(self.last_id, event)))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError) as exc:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                if failures == 0:
                    log.warning("event stream unreachable (%s); reconnecting", exc)
                failures += 1
                started = False
                self._ready.clear()
                await self._drop_client()
                await asyncio.sleep(delay)

    async def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    def _broadcast(self, item: Item) -> None:
        for subscription in list(self._subscribers):
            if subscription.dropped:
                continue
            try:
                subscription.queue.put_nowait(item)
            except asyncio.QueueFull:
                # Too far behind: it gets one reset (room is made for it) and no more events.
                subscription.dropped = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    subscription.queue.get_nowait()
                subscription.queue.put_nowait(Reset("this client fell too far behind", self.last_id))
