"""Webhooks: POST each publish event to ``TALLY_WEBHOOK_URLS``, signed, after the write it reports.

The events are the ones the writes appended to ``{p}:events`` (:mod:`cache.events`),
so a webhook can neither run ahead of Redis nor report a switch that did not happen.
:func:`relay` is called by the publishing side after its writes: it sends every
event after ``{p}:webhooks:cursor`` to every URL in order, retrying each with backoff,
then moves the cursor. It never raises and never undoes a write: a receiver that
stays down costs that receiver the event (logged, counted in the returned report),
nothing else. A relay that dies before moving the cursor is made good by the next
one (receivers deduplicate by ``X-Tally-Event-Id``); a lock keeps two publishers
from relaying the same events at once.

Each request: ``POST`` with the event's JSON (the same document as ``GET /v1/events``'s
``data``), ``Content-Type: application/json``, ``X-Tally-Event`` (its type),
``X-Tally-Event-Id`` (its stream id) and, with ``TALLY_WEBHOOK_SECRET``,
``X-Tally-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from cache.client import text
from cache.events import Event, parse_event, read_events
from cache.keys import KeyLayout

log = logging.getLogger(__name__)

BACKOFF_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # waits between the 5 attempts of one delivery
REQUEST_TIMEOUT_SECONDS = 5.0
LOCK_SECONDS = 300  # a relay that dies holding the lock frees it after this
SIGNATURE_HEADER = "X-Tally-Signature"


@dataclass
class WebhookReport:
    """What one relay did: deliveries made (event x URL), given up, retries, events covered."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0
    events: int = 0
    failures: list[str] = field(default_factory=list)  # "<url>: <event id>: <last error>"

    def as_stats(self) -> dict[str, int]:
        return {"delivered": self.delivered, "failed": self.failed, "retries": self.retries, "events": self.events}


def sign(body: bytes, secret: str) -> str:
    """The ``X-Tally-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(entry_id: str, event: Event) -> bytes:
    return json.dumps({"id": entry_id, **event.document()}, separators=(",", ":")).encode()


def relay(
    client: redis.Redis,
    layout: KeyLayout,
    urls: Sequence[str],
    secret: str | None,
    *,
    backoff: Sequence[float] = BACKOFF_SECONDS,
    post: Callable[[str, bytes, dict[str, str]], int] | None = None,
) -> WebhookReport:
    """Deliver the events after the cursor to every URL; move the cursor; never raise."""
    report = WebhookReport()
    if not urls:
        return report
    token = secrets.token_hex(8)
    try:
        if not client.set(layout.webhook_lock(), token, nx=True, ex=LOCK_SECONDS):
            log.info("webhooks: another publisher is relaying; its relay sends these events too")
            return report
        try:
            pending = _pending_events(client, layout)
            report.events = len(pending)
            if pending:
                _deliver_all(pending, urls, secret, backoff, post or _post, report)
                client.set(layout.webhook_cursor(), pending[-1][0])
        finally:
            # Only our own lock: one that expired and was taken by another relay stays.
            if client.get(layout.webhook_lock()) == token.encode():
                client.delete(layout.webhook_lock())
    except redis.RedisError as exc:  # the publish is done; the next relay sends what this one could not
        log.warning("webhooks: Redis failed while relaying (%s); the next publish relays again", exc)
    return report


def _pending_events(client: redis.Redis, layout: KeyLayout) -> list[tuple[str, Event]]:
    cursor = client.get(layout.webhook_cursor())
    if cursor is not None:
        return read_events(client, layout, after=text(cursor), count=10_000)
    # Webhooks were just configured: start with the newest event, not the whole kept history.
    newest: list[Any] = client.xrevrange(layout.events(), count=1) or []
    return [(text(entry_id), parse_event(fields)) for entry_id, fields in newest]


def _deliver_all(
    events: Sequence[tuple[str, Event]],
    urls: Sequence[str],
    secret: str | None,
    backoff: Sequence[float],
    post: Callable[[str, bytes, dict[str, str]], int],
    report: WebhookReport,
) -> None:
    """Each URL gets the events in order, in its own thread (a slow receiver delays only itself)."""

    def to_url(url: str) -> WebhookReport:
        mine = WebhookReport()
        for entry_id, event in events:
            _deliver(url, entry_id, event, secret, backoff, post, mine)
        return mine

    with ThreadPoolExecutor(max_workers=min(8, len(urls)), thread_name_prefix="tally-webhook") as pool:
        for part in pool.map(to_url, urls):
            report.delivered += part.delivered
            report.failed += part.failed
            report.retries += part.retries
            report.failures += part.failures


def _deliver(
    url: str,
    entry_id: str,
    event: Event,
    secret: str | None,
    backoff: Sequence[float],
    post: Callable[[str, bytes, dict[str, str]], int],
    report: WebhookReport,
) -> None:
    body = body_of(entry_id, event)
    headers = {"Content-Type": "application/json", "X-Tally-Event": event.type, "X-Tally-Event-Id": entry_id}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    error = ""
    for attempt in range(len(backoff) + 1):
        if attempt:
            report.retries += 1
            time.sleep(backoff[attempt - 1])
        try:
            status = post(url, body, headers)
        except OSError as exc:  # refused, timed out, DNS: worth another try
            error = str(exc)
            continue
        if 200 <= status < 300:
            report.delivered += 1
            return
        error = f"HTTP {status}"
        if 400 <= status < 500 and status not in (408, 429):
            break  # the receiver refuses this request; sending it again will not change that
    report.failed += 1
    report.failures.append(f"{url}: {entry_id}: {error}")
    log.warning("webhook %s: event %s (%s) not delivered: %s", url, entry_id, event.type, error)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
