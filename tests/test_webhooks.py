"""Webhooks (cache.webhooks): every event POSTed in order, signed, retried, and never in a publish's way.

A real HTTP receiver on localhost (it fails the first attempts on purpose) and a
real Redis; events come from real publishes (cache.publish, cache.freshness).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from cache.freshness import mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from cache.webhooks import SIGNATURE_HEADER, relay
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.support.builds import events_build
from tests.support.cli import tally_env, tally_in_process
from tests.support.net import free_port
from tests.support.rollups import write_synthetic_hour

H0 = datetime(2026, 11, 23, tzinfo=UTC)
OPTIONS = PublishOptions(superseded_ttl=60)
SECRET = "webhook-secret"
FAST = (0.01, 0.02, 0.04, 0.08)  # the backoff, shortened for tests


@dataclass
class Receiver:
    """Answers 500 to the first ``fail_first`` requests of each event id, then 200; keeps what it accepted."""

    fail_first: int = 0
    status_after: int = 200
    accepted: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers["X-Tally-Event-Id"]
                receiver.attempts[event_id] = receiver.attempts.get(event_id, 0) + 1
                status = 500 if receiver.attempts[event_id] <= receiver.fail_first else receiver.status_after
                if status == 200:
                    receiver.accepted.append({"headers": dict(self.headers), "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), found.handler())
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield found
    server.shutdown()


def publish(client: redis.Redis, layout: KeyLayout, hour: int, value: float = 1.0) -> None:
    publish_builds(client, layout, [events_build(H0 + timedelta(hours=hour), value)], OPTIONS)


def test_events_arrive_in_order_signed_after_retries(
    redis_client: redis.Redis, layout: KeyLayout, receiver: Receiver
) -> None:
    receiver.fail_first = 2  # each event fails twice, then is accepted
    publish(redis_client, layout, 0)
    first = relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST)
    assert first.as_stats() == {"delivered": 1, "failed": 0, "retries": 2, "events": 1}
    publish(redis_client, layout, 1)
    publish(redis_client, layout, 1, 2.0)  # a revision
    mark_pending(redis_client, layout, [H0], {H0: "input changed since the hour was built"})
    second = relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST)
    assert second.as_stats() == {"delivered": 3, "failed": 0, "retries": 6, "events": 3}
    bodies = [json.loads(a["body"]) for a in receiver.accepted]
    assert [b["type"] for b in bodies] == ["published", "published", "revised", "pending"]
    stream = [entry_id.decode() for entry_id, _ in redis_client.xrange(layout.events())]
    assert [b["id"] for b in bodies] == stream  # every event, once, in the stream's order
    for accepted, body in zip(receiver.accepted, bodies, strict=True):
        expected = "sha256=" + hmac.new(SECRET.encode(), accepted["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(accepted["headers"][SIGNATURE_HEADER], expected)
        assert accepted["headers"]["X-Tally-Event"] == body["type"]
        assert accepted["headers"]["Content-Type"] == "application/json"
    assert relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST).events == 0  # nothing twice


def test_a_dead_receiver_costs_only_its_own_deliveries(
    redis_client: redis.Redis, layout: KeyLayout, receiver: Receiver
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    publish(redis_client, layout, 0)
    started = time.monotonic()
    report = relay(redis_client, layout, [dead, receiver.url], None, backoff=FAST)
    assert time.monotonic() - started < 5
    assert (report.delivered, report.failed, report.retries) == (1, 1, 4)
    assert report.failures[0].startswith(dead)
    assert SIGNATURE_HEADER not in receiver.accepted[0]["headers"]  # no secret, no signature
    # The publish itself is untouched and later events still go out.
    publish(redis_client, layout, 1)
    assert relay(redis_client, layout, [receiver.url], None, backoff=FAST).delivered == 1


def test_a_refusal_is_not_retried(redis_client: redis.Redis, layout: KeyLayout, receiver: Receiver) -> None:
    receiver.status_after = 410
    publish(redis_client, layout, 0)
    report = relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST)
    assert (report.delivered, report.failed, report.retries) == (0, 1, 0)
    assert "HTTP 410" in report.failures[0]


def test_one_relay_at_a_time_and_a_redis_outage_never_raises(
    redis_client: redis.Redis, layout: KeyLayout, receiver: Receiver
) -> None:
    publish(redis_client, layout, 0)
    redis_client.set(layout.webhook_lock(), "someone-else", ex=30)
    assert relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST).events == 0
    redis_client.delete(layout.webhook_lock())
    assert relay(redis_client, layout, [receiver.url], SECRET, backoff=FAST).delivered == 1
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    assert relay(nowhere, layout, [receiver.url], SECRET, backoff=FAST).events == 0


def test_tally_publish_and_rollback_relay_their_events(
    redis_server: str,
    layout: KeyLayout,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands a user runs POST the events of their own writes (TALLY_WEBHOOK_URLS, _SECRET)."""
    spec = load_spec(DEFAULT_SPEC_PATH)
    hour = datetime(2026, 11, 24, 9, tzinfo=UTC)
    env = tally_env(tmp_path, layout, redis_server, TALLY_WEBHOOK_URLS=receiver.url, TALLY_WEBHOOK_SECRET=SECRET)
    argv = ["publish", "--start", "2026-11-24T09:00Z", "--end", "2026-11-24T10:00Z"]
    write_synthetic_hour(tmp_path, hour, spec, seed=1)
    first = tally_in_process(argv, monkeypatch, capsys, **env)
    write_synthetic_hour(tmp_path, hour, spec, seed=2)  # new input for the hour: a revision
    second = tally_in_process(argv, monkeypatch, capsys, **env)
    back = tally_in_process(["rollback", "--hour", "2026-11-24T09:00Z"], monkeypatch, capsys, **env)
    assert (first.code, second.code, back.code) == (0, 0, 0)
    assert "webhooks: 1 delivered, 0 failed" in first.out and "webhooks: 1 delivered" in back.out
    bodies = [json.loads(a["body"]) for a in receiver.accepted]
    # The first publish of an empty prefix is a rehydrate of its rollups (the publish then finds it unchanged).
    assert [b["type"] for b in bodies] == ["rehydrated", "revised", "rolled_back"]
    assert all(b["hours"] == ["2026-11-24T09:00:00Z"] for b in bodies)
    for accepted in receiver.accepted:
        expected = "sha256=" + hmac.new(SECRET.encode(), accepted["body"], hashlib.sha256).hexdigest()
        assert accepted["headers"][SIGNATURE_HEADER] == expected
