"""Serving repeated series requests from bytes built earlier, never from stale data.

A dashboard asks the same few questions over and over between hourly publishes.
Building a 168-point answer takes milliseconds of Python (reading hashes,
unioning sketches, validating and encoding the model); sending bytes already
built takes microseconds. This middleware keeps the encoded 200 responses of
``/v1/metrics/{name}`` in memory, keyed by path, raw query string and the
representation the ``Accept`` header picks (JSON or CSV, :mod:`dashboard_api.csv_format`),
and serves one again only when both hold:

* ``{prefix}:generation`` still holds the token it held before the response was
  built. Every write that can change an answer replaces the token, in its
  MULTI/EXEC or right after it (:func:`cache.keys.mark_changed`), so one GET sent
  after a request arrived proves the data is unchanged for it. Requests that arrive
  together share that GET (:class:`GenerationReads`): one read answers every request
  waiting when it is sent, never one that arrives later. A write racing the build can only make the
  stored bytes newer than the token says, and the token then changes, so the entry is never served.
* The UTC hour has not turned since. A bucket that ends in the future is
  incomplete, and buckets end on whole UTC hours (zones with fractional offsets
  are refused), so an answer can change with the clock only at the top of an hour.

``Cache-Control`` is recomputed for every reply (it counts down to the next
publish); ETag, Last-Modified and the body are the stored ones. Errors and
responses without a generation token (Redis down, nothing published yet) are
never stored.

After a publish, the first read of each query would build its answer again. So the
middleware remembers the queries asked recently (:data:`WARM_QUERIES`, asked within
:data:`WARM_SECONDS`), and :class:`Warming`, told of every publish event by the
process's event hub (:mod:`dashboard_api.event_hub`), builds them again in the
background, one at a time, as a request of their own would: the token is read
first, then the answer built and stored under it, so an entry can be newer than
the token it claims, never older.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache.keys import KeyLayout
from dashboard_api.csv_format import accepted
from dashboard_api.event_hub import EventHub, KeepAlive, cancel_until_done
from dashboard_api.http_cache import not_modified

log = logging.getLogger(__name__)

# The read endpoints whose answers depend only on the query and what is published.
CACHED_PREFIXES = ("/v1/metrics/", "/v1/retention", "/v1/funnel")
UNREACHABLE_BACKOFF_SECONDS = 5.0
# Warming after a publish: the queries asked within this many seconds, at most this many (newest first).
WARM_SECONDS = 900.0
WARM_QUERIES = 64
# A publish is several events (the switch, then tier moves, pending marks): warm once they have settled.
WARM_SETTLE_SECONDS = 0.05
# What a warming request keeps of the request it repeats: the representation comes from Accept.
_WARM_SCOPE_KEYS = (
    *("type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string"),
    *("root_path", "app", "server"),
)


@dataclass(frozen=True)
class Entry:
    generation: bytes
    hour: int  # the UTC hour (hours since the epoch) the response was built in
    headers: list[tuple[bytes, bytes]]  # without Cache-Control
    etag: bytes
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 200


class ResponseCache:
    """A byte-bounded LRU of encoded responses."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def peek(self, key: bytes) -> Entry | None:
        """The entry, without counting it as used (warming looks, it does not ask)."""
        return self._entries.get(key)

    def put(self, key: bytes, entry: Entry) -> None:
        if entry.size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size

    def __len__(self) -> int:
        return len(self._entries)


def current_hour(now: datetime | None = None) -> int:
    return int((now or datetime.now(UTC)).timestamp()) // 3600


class GenerationReads:
    """``GET {prefix}:generation``, once for all the requests waiting when it is sent.

    The GET is synchronous (a few bytes on loopback) but blocks the event loop for a
    round trip to Redis, which costs more than replaying the answer. A request
    registers and yields; the read runs as the next callback of the loop, after
    every request task already scheduled has registered, and answers them all. Every
    request's token is thus read after it arrived, as a GET of its own would be, and
    under load one round trip serves all the connections that were ready together.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.unreachable_until = 0.0
        # Per event loop: the futures waiting for the next read, and the client to read with.
        self._waiting: dict[asyncio.AbstractEventLoop, tuple[redis.Redis, list[asyncio.Future[bytes | None]]]] = {}

    async def read(self, client: redis.Redis) -> bytes | None:
        """The token now, or None while Redis is unreachable (the route then answers with its own 503)."""
        if time.monotonic() < self.unreachable_until:
            return None
        loop = asyncio.get_running_loop()
        # One future per request: a cancelled request must not cancel the others' answer.
        future: asyncio.Future[bytes | None] = loop.create_future()
        batch = self._waiting.get(loop)
        if batch is None:
            self._waiting[loop] = (client, [future])
            loop.call_soon(self._read_for_waiting, loop)
        else:
            batch[1].append(future)
        return await future

    def _read_for_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        client, waiting = self._waiting.pop(loop)
        generation = self._get(client)
        for future in waiting:
            if not future.done():
                future.set_result(generation)

    def _get(self, client: redis.Redis) -> bytes | None:
        try:
            return client.get(self.key)  # type: ignore[return-value]  # bytes: the client does not decode
        except Exception:  # Redis down: the route answers with its own 503
            # A GET that fails may have blocked the event loop for the connect
            # timeout; don't ask again for a while, let the routes (in threads) wait.
            self.unreachable_until = time.monotonic() + UNREACHABLE_BACKOFF_SECONDS
            return None


class ResponseCacheMiddleware:
    """Serve ``GET /v1/metrics/{name}`` from :class:`ResponseCache` while the data is unchanged.

    ``cache_control`` gives the Cache-Control value for now (the route's own rule).
    Must sit inside the read-only and token middleware, so it only sees GETs
    that are allowed.
    """

    def __init__(
        self,
        app: ASGIApp,
        layout: KeyLayout,
        max_bytes: int,
        cache_control: Callable[[datetime], str],
        warming: Warming | None = None,
    ) -> None:
        self.app = app
        self.generations = GenerationReads(layout.generation())
        self.cache = ResponseCache(max_bytes)
        self.cache_control = cache_control
        self._cache_control_second: tuple[int, bool] | None = None
        self._cache_control_header = (b"cache-control", b"")
        # Cache key -> (when it was last asked, monotonic; the request's scope, to build it again).
        self.recent: OrderedDict[bytes, tuple[float, Scope]] = OrderedDict()
        if warming is not None:
            warming.middleware = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(CACHED_PREFIXES):
            await self.app(scope, receive, send)
            return
        generation = await self.generations.read(scope["state"]["redis"])
        if generation is None:
            await self.app(scope, receive, send)
            return
        now = datetime.now(UTC)
        hour = current_hour(now)
        key = cache_key(scope)
        entry = self.cache.get(key)
        if entry is not None and entry.generation == generation and entry.hour == hour:
            self._asked(key, scope)
            await self._replay(scope, entry, now, send)
            return
        await self.app(scope, receive, self._recording(send, key, generation, hour, scope))

    def _asked(self, key: bytes, scope: Scope) -> None:
        """Remember a query whose answer was stored (errors are not built again)."""
        known = self.recent.pop(key, None)
        # The scope is kept once per query (its first asking): a warming build needs only its query.
        self.recent[key] = (time.monotonic(), known[1] if known is not None else _warm_scope(scope))
        if len(self.recent) > WARM_QUERIES:
            self.recent.popitem(last=False)

    async def warm(self, client: redis.Redis) -> int:
        """Build the recently asked queries whose stored answer is not current; returns how many were built.

        The token is read before any of them is built (as for a request), so each
        entry holds data at least as new as the token it is stored under.
        """
        generation = await self.generations.read(client)
        if generation is None:
            return 0
        hour = current_hour()
        oldest = time.monotonic() - WARM_SECONDS
        built = 0
        for key, (asked, scope) in reversed(list(self.recent.items())):
            if asked < oldest:
                self.recent.pop(key, None)
                continue
            entry = self.cache.peek(key)
            if entry is not None and entry.generation == generation and entry.hour == hour:
                continue
            warm_scope = {**scope, "state": {"redis": client}}
            try:
                await self.app(warm_scope, _no_body, self._recording(_discard, key, generation, hour))
            except Exception:  # e.g. Redis gone mid-way: this entry stays as it was, the next is tried
                log.warning("warming %r failed", key, exc_info=True)
                continue
            built += 1
        return built

    def _cache_control(self, now: datetime) -> tuple[bytes, bytes]:
        # The value changes once a second (it counts whole seconds down), so it is
        # built once per second, not per reply; a whole second's instant counts one
        # more second than the rest of it, hence the second half of the key.
        second = (int(now.timestamp()), now.microsecond == 0)
        if second != self._cache_control_second:
            self._cache_control_header = (b"cache-control", self.cache_control(now).encode())
            self._cache_control_second = second
        return self._cache_control_header

    async def _replay(self, scope: Scope, entry: Entry, now: datetime, send: Send) -> None:
        cache_control = self._cache_control(now)
        if_none_match = _header(scope, b"if-none-match")
        if if_none_match is not None and not_modified(if_none_match.decode("latin-1"), entry.etag.decode("latin-1")):
            headers = [(k, v) for k, v in entry.headers if k in (b"etag", b"last-modified", b"vary")]
            await send({"type": "http.response.start", "status": 304, "headers": [*headers, cache_control]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [*entry.headers, cache_control]})
        await send({"type": "http.response.body", "body": entry.body})

    def _recording(self, send: Send, key: bytes, generation: bytes, hour: int, asked: Scope | None = None) -> Send:
        """``send``, storing a 200 with an ETag under ``generation``; ``asked``: the request's (not warming's)."""
        status: list[int] = []
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Copied now: outer middleware (CORS) adds its per-request headers to
                # this very list once it is sent on.
                status.append(message["status"])
                headers.extend((k.lower(), v) for k, v in message["headers"])
            elif message["type"] == "http.response.body" and status == [200]:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    etag = next((v for k, v in headers if k == b"etag"), None)
                    if etag is not None:
                        kept = [(k, v) for k, v in headers if k != b"cache-control"]
                        self.cache.put(key, Entry(generation, hour, kept, etag, b"".join(chunks)))
                        if asked is not None:
                            self._asked(key, asked)
            await send(message)

        return record


def cache_key(scope: Scope) -> bytes:
    """Path, raw query and the representation ``Accept`` picks: a JSON body is never replayed for CSV."""
    return scope["path"].encode() + b"?" + scope["query_string"] + b"#" + _representation(_header(scope, b"accept"))


@lru_cache(maxsize=256)
def _representation(accept: bytes | None) -> bytes:
    # Clients send the same few Accept headers on every request: parse each once.
    return accepted(None if accept is None else accept.decode("latin-1")).encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _warm_scope(scope: Scope) -> Scope:
    """What a warming build repeats of a request: its path and query, and only the Accept header."""
    accept = _header(scope, b"accept")
    return {
        **{name: scope[name] for name in _WARM_SCOPE_KEYS if name in scope},
        "headers": [] if accept is None else [(b"accept", accept)],
        "client": None,
    }


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


class Warming:
    """After each publish, the recently asked series built again, so a dashboard's next read is a hit.

    Runs as one task of the app's lifespan: it follows the event hub's stream
    (any event may change an answer; a ``reset`` means some may have been missed)
    and, once events have settled for :data:`WARM_SETTLE_SECONDS`, has the response
    cache middleware build its recent queries (:meth:`ResponseCacheMiddleware.warm`).
    """

    def __init__(self) -> None:
        self.middleware: ResponseCacheMiddleware | None = None  # set when the middleware is built
        self.rounds = 0  # warming rounds run (tests and curiosity)
        self._task: asyncio.Task[None] | None = None

    def start(self, hub: EventHub, client: redis.Redis) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(hub, client), name="tally-response-warming")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_until_done(task)

    async def _run(self, hub: EventHub, client: redis.Redis) -> None:
        while True:  # a subscription the hub dropped (too far behind) is replaced
            async with hub.subscribe() as subscription:
                while not subscription.dropped:
                    item = await subscription.queue.get()
                    if isinstance(item, KeepAlive):
                        continue
                    # Let the rest of the publish arrive (its events come within milliseconds), then warm once.
                    await asyncio.sleep(WARM_SETTLE_SECONDS)
                    while not subscription.queue.empty():
                        subscription.queue.get_nowait()
                    await self._warm(client)

    async def _warm(self, client: redis.Redis) -> None:
        if self.middleware is None:  # the response cache is off
            return
        await self.middleware.warm(client)
        self.rounds += 1
