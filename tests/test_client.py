"""``tally.client`` against a live `tally serve`: DataFrames equal the JSON, 304s, retries, errors, SSE parsing.

The DataFrames are checked point for point against the JSON the same server
answers (the API's numbers are other tests' job). Retry-After and event-stream
reconnection are checked against small local HTTP servers that answer exactly
what each case needs, since `tally serve` never sends Retry-After and
``/v1/events`` is tested live elsewhere.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from typing import Any

import httpx
import pandas as pd
import pytest

from tally.client import Client, Event, Message, SSEParser, TallyError
from tally.client.http import parse_retry_after
from tests.support.live_api import LiveApi, live_api, requests_answered, server_without_redis
from tests.support.net import free_port

SERIES_ROUTE = "/v1/metrics/{name}"
DST_DAYS = {"start": "2026-10-30", "end": "2026-11-03", "grain": "day", "tz": "America/New_York"}
# Hours 2026-11-04T00Z on were never published: their points are null.
PAST_THE_DATA = {"start": "2026-11-03T21:00:00Z", "end": "2026-11-04T02:00:00Z"}
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("events", PAST_THE_DATA),
    ("events", {**DST_DAYS, "group_by": "country", "limit": 2}),
    ("revenue", {**DST_DAYS, "country": "DE", "group_by": "platform"}),
    ("active_users", {"start": "2026-10-30T00:00:00Z", "end": "2026-10-30T06:00:00Z", "bounds": True}),
    ("order_value_p95", {**DST_DAYS, "q": 0.5, "platform": "web"}),
    ("avg_order_value", {"start": "2026-10-26", "end": "2026-11-09", "grain": "week", "window": None}),
    ("events", {"start": "2026-11-01", "end": "2026-11-04", "grain": "day", "window": 2}),
]


@pytest.fixture(scope="module")
def api(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with live_api(redis_server, tmp_path_factory.mktemp("client")) as served:
        yield served


@pytest.fixture
def client(api: LiveApi) -> Iterator[Client]:
    with Client(api.url) as tally:
        yield tally


def as_query(params: dict[str, Any]) -> dict[str, str]:
    """The client's keyword arguments as the query string it should send."""
    text = {"bounds": lambda v: "true" if v else "false", "window": lambda v: f"{v}d"}
    return {k: text.get(k, str)(v) for k, v in params.items() if v is not None}


def equal_values(got: object, want: object) -> bool:
    if want is None:
        return got is None or got is pd.NA or (isinstance(got, float) and math.isnan(got))
    return got == want and (type(want) is not int or isinstance(got, int))


@pytest.mark.parametrize(("metric", "params"), QUERIES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(QUERIES)])
def test_the_frame_is_the_json_point_for_point(client: Client, api: LiveApi, metric: str, params: dict) -> None:
    frame = client.series(metric, **params)
    document = httpx.get(f"{api.url}/v1/metrics/{metric}", params=as_query(params)).json()
    points = [(s, p) for s in document["series"] for p in s["points"]]
    assert len(frame) == len(points) > 0
    assert str(frame["timestamp"].dt.tz) == document["tz"]
    for row, (series, point) in zip(frame.to_dict("records"), points, strict=True):
        assert row["timestamp"] == pd.Timestamp(point["ts"])  # the same instant
        assert row["timestamp"].utcoffset() == pd.Timestamp(point["ts"]).utcoffset()  # and shown in the same zone
        assert {name: row[name] for name in series["labels"]} == series["labels"]
        assert equal_values(row["value"], point["value"]), (row, point)
        assert (row["complete"], row["revised"]) == (point["complete"], point["revised"])
        for bound in ("lower", "upper"):
            assert (bound in row) == (bound in point)
            if bound in point:
                assert equal_values(row[bound], point[bound])
        if "group_by" in params:
            assert row["other"] == series["other"]
    assert frame.attrs["build"] == document["build"] and frame.attrs["tz"] == document["tz"]


def test_the_frame_has_the_pinned_columns(client: Client) -> None:
    grouped = client.series("revenue", **DST_DAYS, country="DE", group_by="platform")
    assert list(grouped.columns) == ["timestamp", "country", "platform", "value", "complete", "revised", "other"]
    assert set(grouped["platform"]) == {"web", "ios", "android"} and set(grouped["country"]) == {"DE"}
    plain = client.series("events", **PAST_THE_DATA)
    assert list(plain.columns) == ["timestamp", "value", "complete", "revised"]
    assert str(plain["value"].dtype) == "Int64" and plain["value"].isna().sum() == 2  # counts stay exact
    bounded = client.series("active_users", start="2026-10-30T00:00:00Z", end="2026-10-30T02:00:00Z", bounds=True)
    assert list(bounded.columns) == ["timestamp", "value", "complete", "revised", "lower", "upper"]
    # A DST day in New York: the offsets differ, the zone is one.
    offsets = {ts.utcoffset().total_seconds() / 3600 for ts in grouped["timestamp"]}
    assert offsets == {-4, -5}


def test_a_datetime_range_is_sent_with_its_offset(client: Client) -> None:
    start, end = datetime(2026, 10, 30, 4, tzinfo=UTC), datetime(2026, 10, 30, 7, tzinfo=UTC)
    frame = client.series("events", start=start, end=end, tz="America/New_York")
    assert [ts.isoformat() for ts in frame["timestamp"]] == [
        "2026-10-30T00:00:00-04:00",
        "2026-10-30T01:00:00-04:00",
        "2026-10-30T02:00:00-04:00",
    ]


def test_a_repeated_call_costs_a_304(client: Client, api: LiveApi) -> None:
    params = {**DST_DAYS, "group_by": "platform"}
    before = requests_answered(api.url, SERIES_ROUTE, 304)
    first = client.series("sessions", **params)
    again = client.series("sessions", **params)
    pd.testing.assert_frame_equal(first, again)
    assert client.stats.not_modified == 1 and client.stats.requests == 2
    # The server saw If-None-Match and answered 304 itself.
    assert requests_answered(api.url, SERIES_ROUTE, 304) == before + 1
    # What the caller does to one answer does not change the next.
    document = client.series_json("sessions", as_query(params))
    document["series"].clear()
    assert client.series_json("sessions", as_query(params))["series"] and client.stats.not_modified == 3


def test_catalogue_runs_and_health_are_the_api_documents(client: Client, api: LiveApi) -> None:
    assert client.metrics() == httpx.get(f"{api.url}/v1/metrics").json()
    window = {"start": "2026-10-30T00:00:00Z", "end": "2026-10-30T03:00:00Z"}
    assert client.runs(**window) == httpx.get(f"{api.url}/v1/runs", params=window).json()
    assert [run["hour"] for run in client.runs(**window)["runs"]] == [
        "2026-10-30T00:00:00Z",
        "2026-10-30T01:00:00Z",
        "2026-10-30T02:00:00Z",
    ]
    health = client.health()
    assert health["redis"] == "ok" and health["newest_hour"] == "2026-11-03T23:00:00Z"


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.series("no_such_metric", start="2026-10-30", end="2026-10-31"), 404, "unknown_metric"),
        (lambda c: c.series("events", start="2026-10-30", end="2026-10-31", grain="year"), 400, "bad_grain"),
        (lambda c: c.series("events", start="2026-10-30", end="2026-10-31", colour="red"), 400, "unknown_dimension"),
        (lambda c: c.series("events", start="2026-10-31", end="2026-10-30"), 400, "bad_range"),
        (lambda c: c.series("revenue", start="2026-10-30", end="2026-10-31", bounds=True), 400, "bad_parameter"),
    ],
)
def test_an_error_answer_raises_the_api_code(client: Client, call: Callable, status: int, code: str) -> None:
    with pytest.raises(TallyError) as raised:
        call(client)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message and code in str(raised.value)
    assert client.stats.retries == 0  # only 503s and failed connections are retried


def test_a_503_is_retried_then_raised_as_redis_unavailable(redis_server: str) -> None:
    with server_without_redis(redis_db=11) as url, Client(url, retries=2, backoff=0.05) as tally:
        started = time.monotonic()
        with pytest.raises(TallyError) as raised:
            tally.series("events", start="2026-10-30", end="2026-10-31")
        assert (raised.value.status, raised.value.code) == (503, "redis_unavailable")
        assert (tally.stats.requests, tally.stats.retries) == (3, 2)
        assert time.monotonic() - started >= 0.05 * 0.5 + 0.1 * 0.5  # it waited between attempts
        with pytest.raises(TallyError) as health:
            tally.health()
        assert health.value.code == "redis_unavailable" and health.value.body["redis"] == "unreachable"


# --- against scripted local servers: Retry-After, unreachable, event streams ---------------------

Answer = Callable[[BaseHTTPRequestHandler, int], None]


@contextmanager
def scripted_server(answer: Answer) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP/1.0 server calling ``answer(handler, n)`` for its n-th request; yields its URL and each request's
    path and headers (lower-cased names)."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            answer(self, len(seen))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def test_retry_after_is_waited_for(redis_server: str) -> None:
    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:
            reply(handler, 503, b'{"error": {"code": "cache_cold", "message": "nothing yet"}}', Retry_After="1")
        else:
            reply(handler, 200, b'{"status": "ok"}')

    with scripted_server(answer) as (url, seen), Client(url, retries=2, backoff=0.01) as tally:
        started = time.monotonic()
        assert tally.health() == {"status": "ok"}
        assert time.monotonic() - started >= 1.0  # Retry-After, not the 10 ms backoff
        assert (len(seen), tally.stats.retries) == (2, 1)
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert (parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") or 0) > 0


def test_an_unreachable_server_raises_after_the_retries(redis_server: str) -> None:
    with Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01) as tally:
        with pytest.raises(TallyError) as raised:
            tally.metrics()
        assert (raised.value.status, raised.value.code) == (None, "unreachable")
        assert tally.stats.requests == 2


def stream(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """A 200 event stream that sends ``body`` and then drops the connection (HTTP/1.0: no length)."""
    reply(handler, 200, body, Content_Type="text/event-stream")


def test_listen_resumes_from_the_last_id_after_a_drop(redis_server: str) -> None:
    first = (
        b"retry: 20\r\n: keep-alive\r\n\r\n"
        b'id: 1-0\nevent: published\ndata: {"hours": ["2026-11-03T10:00:00Z"], "metrics": ["events"]}\n\n'
        b'id: 1-1\nevent: revised\ndata: {"n": 2}\n\n'
        b'id: 1-2\nevent: revised\ndata: {"cut off'  # the connection drops inside an event: it is never seen
    )

    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        stream(handler, first if n == 1 else b'id: 2-0\nevent: pending\ndata: {"hours": []}\n\n')

    with scripted_server(answer) as (url, seen), Client(url, retries=2, backoff=5) as tally:
        started = time.monotonic()
        events = list(islice(tally.listen(since="0-9", metrics=["events", "revenue"]), 3))
        assert time.monotonic() - started < 2  # the server's retry: 20 ms, not the 5 s backoff
    assert events == [
        Event("1-0", "published", {"hours": ["2026-11-03T10:00:00Z"], "metrics": ["events"]}),
        Event("1-1", "revised", {"n": 2}),
        Event("2-0", "pending", {"hours": []}),
    ]
    assert seen[0]["path"] == "/v1/events?metrics=events%2Crevenue&since=0-9" and "last-event-id" not in seen[0]
    assert seen[1]["path"] == "/v1/events?metrics=events%2Crevenue" and seen[1]["last-event-id"] == "1-1"
    assert seen[0]["accept"] == "text/event-stream" and tally.stats.reconnects == 1


def test_listen_gives_up_after_the_retries_and_raises_api_errors(redis_server: str) -> None:
    empty = scripted_server(lambda handler, n: stream(handler, b""))
    with empty as (url, seen), Client(url, retries=2, backoff=0.01) as t:
        with pytest.raises(TallyError) as lost:
            next(t.listen())
        assert lost.value.code == "stream_lost" and len(seen) == 3
    refused = b'{"error": {"code": "unauthorized", "message": "needs a token"}}'
    with scripted_server(lambda handler, n: reply(handler, 401, refused)) as (url, seen), Client(url) as t:
        with pytest.raises(TallyError) as denied:
            next(t.listen())
        assert (denied.value.status, denied.value.code, len(seen)) == (401, "unauthorized", 1)


# --- the event-stream parser, on bytes split anywhere ------------------------------------------

STREAM = (
    b"\xef\xbb\xbf: a comment after the BOM\r\n"
    b"retry: 1500\r\nretry: soon\r\n"
    b'id: 5-0\r\nevent: published\r\ndata: {"a":\r\ndata:  1}\r\n\r\n'
    b"event: lonely\n\n"  # no data: nothing dispatched, and the type does not carry over
    b"data: caf\xc3\xa9\rid: 6-0\r\r\n"
    b"event: x\nid: bad\x00id\ndata\n\n"
    b"data:no-space\nunknown: field\n\n"
    b"data: never ended"
)
EXPECTED = [
    Message("5-0", "published", '{"a":\n 1}'),
    Message("6-0", "message", "caf\u00e9"),
    Message("6-0", "x", ""),
    Message("6-0", "message", "no-space"),
]


def parse(chunks: list[bytes]) -> tuple[list[Message], SSEParser]:
    parser = SSEParser()
    return [message for chunk in chunks for message in parser.feed(chunk)], parser


def test_the_parser_follows_the_standard() -> None:
    messages, parser = parse([STREAM])
    assert messages == EXPECTED
    assert parser.retry_ms == 1500 and parser.last_event_id == "6-0"


def test_the_parser_gives_the_same_events_however_the_bytes_are_split() -> None:
    assert parse([bytes([b]) for b in STREAM])[0] == EXPECTED
    for i in range(len(STREAM) + 1):
        for j in range(i, len(STREAM) + 1, 3):
            assert parse([STREAM[:i], STREAM[i:j], STREAM[j:]])[0] == EXPECTED, (i, j)


def test_a_cr_at_the_end_of_a_chunk_ends_one_line_only() -> None:
    # CR then LF in the next chunk is one line end; CR then CR is two (a blank line: dispatch).
    assert parse([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])[0] == [Message("", "message", "a\nb")]
    assert parse([b"data: a\r", b"\r"])[0] == [Message("", "message", "a")]


# --- installable alone ------------------------------------------------------------------------


def test_the_client_imports_without_the_server_side() -> None:
    heavy = ["fastapi", "starlette", "uvicorn", "redis", "pyspark", "airflow", "datasketches", "cache", "dashboard_api"]
    code = (
        "import sys, tally.client\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith('tally.core')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout
