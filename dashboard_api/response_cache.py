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
"""

from __future__ import annotations

import asyncio
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
from dashboard_api.http_cache import not_modified

# The read endpoints whose answers depend only on the query and what is published.
CACHED_PREFIXES = ("/v1/metrics/", "/v1/retention", "/v1/funnel")
UNREACHABLE_BACKOFF_SECONDS = 5.0


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
        self, app: ASGIApp, layout: KeyLayout, max_bytes: int, cache_control: Callable[[datetime], str]
    ) -> None:
        self.app = app
        self.generations = GenerationReads(layout.generation())
        self.cache = ResponseCache(max_bytes)
        self.cache_control = cache_control
        self._cache_control_second: tuple[int, bool] | None = None
        self._cache_control_header = (b"cache-control", b"")

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
            await self._replay(scope, entry, now, send)
            return
        await self.app(scope, receive, self._recording(send, key, generation, hour))

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

    def _recording(self, send: Send, key: bytes, generation: bytes, hour: int) -> Send:
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
