"""GETs against the Tally API: bounded retries, ETag revalidation, the API's errors as :class:`TallyError`.

* A 503 (Redis down, cache cold) or a connection failure is retried with
  exponential backoff and jitter, waiting as long as ``Retry-After`` says when the
  server sends it; after ``retries`` retries the last answer is raised.
* Every 200 that carries an ETag is remembered (URL -> ETag and body bytes, a small
  LRU); the next GET of that URL sends ``If-None-Match`` and a 304 is answered from
  the remembered bytes (parsed again, so a caller that mutates a result cannot
  change the next one).
* Any other non-2xx raises :class:`TallyError` with the API's
  ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

RETRYABLE_STATUS = 503
MAX_RETRY_AFTER_SECONDS = 60.0
REMEMBERED_URLS = 256


class TallyError(Exception):
    """An error answer of the API (``status``, its stable ``code``, ``message``), or no answer at all.

    ``status`` is None when the server could not be reached (``code`` is then
    ``unreachable``) or an event stream was lost (``stream_lost``). ``body`` is the
    parsed error body, e.g. /health's ``{"status": "unavailable", ...}`` fields.
    """

    def __init__(self, status: int | None, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


@dataclass
class ClientStats:
    """What a client's requests cost, for tests and for people curious about their polling."""

    requests: int = 0  # HTTP requests sent, retries and reconnections included
    not_modified: int = 0  # 304s answered from a remembered body
    retries: int = 0  # requests repeated after a 503 or a connection failure
    reconnects: int = 0  # event-stream connections opened again after a drop


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits about ``base * 2**n``, at most ``cap`` seconds."""

    base: float = 0.5
    cap: float = 10.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_SECONDS)
        # Jitter: clients dropped together (a Redis restart) must not all come back in the same instant.
        return min(self.cap, self.base * 2**attempt) * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date (RFC 9110); None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from(response: httpx.Response) -> TallyError:
    """The API's error body as a TallyError (any other body: ``http_error`` with its start)."""
    try:
        body = response.json()
        error = body["error"]
        return TallyError(response.status_code, str(error["code"]), str(error["message"]), body)
    except (ValueError, KeyError, TypeError):
        return TallyError(response.status_code, "http_error", response.text[:200])


class Transport:
    """One ``httpx.Client`` with the retry and revalidation rules above; ``stats`` counts what they did."""

    def __init__(self, http: httpx.Client, retries: int, backoff: Backoff) -> None:
        self.http = http
        self.retries = retries
        self.backoff = backoff
        self.stats = ClientStats()
        self._remembered: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        request = self.http.build_request("GET", path, params=params)
        key = str(request.url)
        remembered = self._remembered.get(key)
        if remembered is not None:
            request.headers["If-None-Match"] = remembered[0]
        response = self.send(request)
        if response.status_code == 304 and remembered is not None:
            self.stats.not_modified += 1
            self._remembered.move_to_end(key)
            return json.loads(remembered[1])
        if not response.is_success:
            raise error_from(response)
        etag = response.headers.get("etag")
        if etag is not None:
            self._remember(key, etag, response.content)
        return response.json()

    def send(self, request: httpx.Request) -> httpx.Response:
        """The first answer that is no 503, else the last 503; connection failures retried alike."""
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                response = self.http.send(request)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise TallyError(None, "unreachable", f"GET {request.url}: {exc!r}") from exc
                self._wait(attempt, None)
            else:
                if response.status_code != RETRYABLE_STATUS or attempt >= self.retries:
                    return response
                self._wait(attempt, response.headers.get("retry-after"))
            attempt += 1

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        self.stats.retries += 1
        time.sleep(self.backoff.delay(attempt, retry_after))

    def _remember(self, key: str, etag: str, body: bytes) -> None:
        self._remembered[key] = (etag, body)
        self._remembered.move_to_end(key)
        while len(self._remembered) > REMEMBERED_URLS:
            self._remembered.popitem(last=False)
