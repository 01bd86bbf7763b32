"""After a write: relay its publish events to the configured webhooks (cache.webhooks), with the settings."""

from __future__ import annotations

import logging

import redis

from cache.keys import KeyLayout
from cache.webhooks import relay
from tally.core.settings import Settings

log = logging.getLogger(__name__)


def relay_webhooks(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """POST the events after the last relayed one to ``TALLY_WEBHOOK_URLS``; the counts for the run's summary.

    Nothing to do (and nothing read) without webhook URLs. Never raises: a publish
    that succeeded stays a success whatever the receivers do.
    """
    if not settings.webhook_urls:
        return {}
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    report = relay(client, KeyLayout(settings.redis_prefix), settings.webhook_urls, secret)
    if report.failed:
        log.warning(
            "webhooks: %d of %d deliveries failed: %s",
            report.failed,
            report.failed + report.delivered,
            "; ".join(report.failures[:5]),
        )
    elif report.events:
        log.info("webhooks: %d event(s) delivered to %d URL(s)", report.events, len(settings.webhook_urls))
    return report.as_stats()
