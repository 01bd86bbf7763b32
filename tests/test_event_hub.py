"""The event hub's reader against a real Redis: it stops when asked, even when a read swallows the cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import redis

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api.event_hub import EventHub, Published
from tests.support.builds import events_build


def test_the_hub_stops_even_when_a_blocking_read_swallows_its_cancellation(redis_server: str, layout: KeyLayout):
    swallowed: list[int] = []

    async def scenario() -> None:
        hub = EventHub(redis_server, layout, keepalive=1.0)
        client = hub.client()
        real_xread = client.xread

        async def xread(*args: Any, **kwargs: Any) -> Any:
            # What redis/redis-py#2028 does now and then: the cancel is caught inside the read.
            try:
                return await real_xread(*args, **kwargs)
            except asyncio.CancelledError:
                swallowed.append(1)
                return []

        client.xread = xread  # type: ignore[method-assign]
        assert await hub.wait_ready(5)
        await asyncio.sleep(0.2)  # the reader is inside its blocking XREAD
        # A single cancel() then `await task` waited here for ever (CI hung 900 s in tests/test_security.py).
        await asyncio.wait_for(hub.stop(), 10)

    asyncio.run(scenario())
    assert swallowed  # the read did swallow a cancellation, and the hub stopped anyway


def test_a_stopped_hub_starts_again_and_follows_the_stream(redis_server: str, layout: KeyLayout):
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)

    async def scenario() -> object:
        hub = EventHub(redis_server, layout, keepalive=1.0)
        assert await hub.wait_ready(5)
        await hub.stop()
        # Started again: neither the last run's stop flag nor its "ready" may linger.
        assert await hub.wait_ready(5)
        try:
            async with hub.subscribe() as subscription:
                with redis.Redis.from_url(redis_server) as writer:
                    options = PublishOptions(superseded_ttl=60)
                    await asyncio.to_thread(publish_builds, writer, layout, [events_build(hour, 5)], options)
                return await asyncio.wait_for(subscription.queue.get(), 5)
        finally:
            await hub.stop()

    item = asyncio.run(scenario())
    assert isinstance(item, Published) and item.event.type == "published"
