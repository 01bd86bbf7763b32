"""The Tally API as Python calls: documents as the API gives them, series as DataFrames, events as an iterator."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any

import httpx
import pandas as pd

from tally.client.frames import series_frame
from tally.client.http import RETRYABLE_STATUS, Backoff, ClientStats, TallyError, Transport, error_from
from tally.client.sse import SSEParser

EVENTS_PATH = "/v1/events"
# The server sends a keep-alive comment every 15 s: three missed ones mean the connection is gone.
IDLE_TIMEOUT_SECONDS = 45.0


@dataclass(frozen=True)
class Event:
    """One event of ``GET /v1/events``: its stream id, type (published, revised, ...) and JSON data."""

    id: str
    type: str
    data: dict[str, Any]


class Client:
    """A client of one Tally API; ``token`` is the server's TALLY_API_TOKEN, if it has one.

    ``retries``: how often a 503 or a connection failure is retried (and a dropped
    event stream reconnected) before :class:`TallyError` is raised; ``backoff``: the
    first wait in seconds, doubled on each retry. ``stats`` counts requests, 304s and retries.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "tally-client"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._transport = Transport(
            httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout),
            retries,
            Backoff(base=backoff),
        )

    @property
    def stats(self) -> ClientStats:
        return self._transport.stats

    def metrics(self) -> dict[str, Any]:
        """``GET /v1/metrics``: ``{"metrics": [{name, kind, dimensions, grains, ...}], "cards": [...]}``."""
        return self._transport.get_json("/v1/metrics")

    def series(
        self,
        name: str,
        /,
        *,
        start: str | date,
        end: str | date,
        grain: str | None = None,
        tz: str | None = None,
        window: str | int | None = None,
        group_by: str | None = None,
        limit: int | None = None,
        q: float | None = None,
        bounds: bool | None = None,
        **filters: str,
    ) -> pd.DataFrame:
        """``GET /v1/metrics/{name}`` as a DataFrame, one row per point (see :mod:`tally.client.frames`).

        ``start``/``end`` are ISO strings, dates or datetimes (naive ones are in ``tz``, as
        the API reads them); ``window`` is ``"7d"`` or 7; any other keyword is a dimension filter.
        """
        params = {
            "start": _instant(start),
            "end": _instant(end),
            "grain": grain,
            "tz": tz,
            "window": f"{window}d" if isinstance(window, int) else window,
            "group_by": group_by,
            "limit": None if limit is None else str(limit),
            "q": None if q is None else repr(float(q)),
            "bounds": None if bounds is None else ("true" if bounds else "false"),
            **filters,
        }
        document = self.series_json(name, {k: v for k, v in params.items() if v is not None})
        labels = [*filters, *([group_by] if group_by else [])]
        return series_frame(document, labels, grouped=group_by is not None)

    def series_json(self, name: str, params: dict[str, str]) -> dict[str, Any]:
        """The series document itself, for raw query parameters."""
        return self._transport.get_json(f"/v1/metrics/{name}", params)

    def runs(self, start: str | date | None = None, end: str | date | None = None) -> dict[str, Any]:
        """``GET /v1/runs``: ``{"runs": [...]}`` (the newest 24 computed hours without a range)."""
        params = {key: _instant(value) for key, value in (("start", start), ("end", end)) if value is not None}
        return self._transport.get_json("/v1/runs", params)

    def health(self) -> dict[str, Any]:
        """``GET /health``; Redis unreachable raises ``redis_unavailable`` (its body is ``error.body``)."""
        return self._transport.get_json("/health")

    def listen(self, since: str | None = None, metrics: Iterable[str] | str | None = None) -> Iterator[Event]:
        """The events of ``GET /v1/events`` as they come, forever (stop by leaving the loop).

        ``since``: replay from after this stream id. A dropped connection is opened
        again with ``Last-Event-ID`` set to the last id seen, after the server's
        ``retry:`` delay or the backoff; ``retries`` drops in a row with nothing
        received raise ``stream_lost``. A ``reset`` event means events were missed: reload.
        """
        names = metrics if metrics is None or isinstance(metrics, str) else ",".join(metrics)
        last_id, retry_ms, failures, connections = since, None, 0, 0
        while True:
            parser, retry_after = SSEParser(), None
            try:
                with closing(self._stream(names, since if connections == 0 else None, last_id, parser)) as events:
                    for event in events:
                        if event.id:
                            last_id = event.id
                        yield event
                cause = "the server closed the stream"
            except httpx.TransportError as exc:
                cause = repr(exc)
            except _RetryableStatus as exc:
                cause, retry_after = "503", exc.retry_after
            connections += 1
            # The reconnection time is the stream's, not one connection's (WHATWG): it carries over.
            retry_ms = parser.retry_ms if parser.retry_ms is not None else retry_ms
            if parser.received:
                failures = 0  # a connection that delivered something was no failure to connect
            if failures >= self._transport.retries:
                raise TallyError(None, "stream_lost", f"GET {EVENTS_PATH}: {cause}, {failures + 1} times in a row")
            if retry_after is None and retry_ms is not None:
                time.sleep(retry_ms / 1000)
            else:
                time.sleep(self._transport.backoff.delay(failures, retry_after))
            failures += 1
            self.stats.reconnects += 1

    def _stream(
        self, metrics: str | None, since: str | None, last_id: str | None, parser: SSEParser
    ) -> Generator[Event, None, None]:
        params = {key: value for key, value in (("metrics", metrics), ("since", since)) if value is not None}
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if since is None and last_id:
            headers["Last-Event-ID"] = last_id
        timeout = httpx.Timeout(self.timeout, read=IDLE_TIMEOUT_SECONDS)
        self.stats.requests += 1
        with self._transport.http.stream("GET", EVENTS_PATH, params=params, headers=headers, timeout=timeout) as reply:
            if reply.status_code == RETRYABLE_STATUS:
                raise _RetryableStatus(reply.headers.get("retry-after"))
            if not reply.is_success:
                reply.read()
                raise error_from(reply)
            for chunk in reply.iter_bytes():
                for message in parser.feed(chunk):
                    yield Event(message.id, message.type, _event_data(message.data))

    def close(self) -> None:
        self._transport.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _RetryableStatus(Exception):
    def __init__(self, retry_after: str | None) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _event_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TallyError(None, "bad_event", f"event data is not a JSON object: {text[:200]!r}")
    return data


def _instant(value: str | date) -> str:
    # datetime is a date too (and pandas.Timestamp a datetime): isoformat keeps the offset when there is one.
    return value if isinstance(value, str) else value.isoformat()
