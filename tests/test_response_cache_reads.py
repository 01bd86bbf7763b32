"""The response cache's generation reads: shared by requests waiting together, never by a later one."""

from __future__ import annotations

import asyncio

import redis

from dashboard_api import response_cache as rc


class CountingClient:
    """Answers GET with the token it holds, counting the GETs; raises while ``down``."""

    def __init__(self) -> None:
        self.token = b"g1"
        self.gets = 0
        self.down = False

    def get(self, key: str) -> bytes:
        self.gets += 1
        if self.down:
            raise redis.ConnectionError("down")
        return self.token


def test_requests_waiting_together_share_one_get() -> None:
    reads, client = rc.GenerationReads("p:generation"), CountingClient()

    async def together() -> list[bytes | None]:
        return await asyncio.gather(*(reads.read(client) for _ in range(5)))  # type: ignore[arg-type]

    assert asyncio.run(together()) == [b"g1"] * 5
    assert client.gets == 1


def test_a_request_arriving_after_a_get_was_sent_gets_its_own() -> None:
    reads, client = rc.GenerationReads("p:generation"), CountingClient()

    async def one_after_another() -> list[bytes | None]:
        first = await reads.read(client)  # type: ignore[arg-type]
        client.token = b"g2"  # a publish between the two requests
        return [first, await reads.read(client)]  # type: ignore[arg-type]

    assert asyncio.run(one_after_another()) == [b"g1", b"g2"]
    assert client.gets == 2


def test_a_cancelled_request_does_not_cancel_the_others_read() -> None:
    reads, client = rc.GenerationReads("p:generation"), CountingClient()

    async def one_cancelled() -> bytes | None:
        gone = asyncio.ensure_future(reads.read(client))  # type: ignore[arg-type]
        kept = asyncio.ensure_future(reads.read(client))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # both are waiting now
        gone.cancel()
        return await kept

    assert asyncio.run(one_cancelled()) == b"g1"


def test_an_unreachable_redis_is_not_asked_again_for_a_while() -> None:
    reads, client = rc.GenerationReads("p:generation"), CountingClient()
    client.down = True

    async def two_reads() -> list[bytes | None]:
        return [await reads.read(client), await reads.read(client)]  # type: ignore[arg-type]

    assert asyncio.run(two_reads()) == [None, None]  # None: the route answers with its own 503
    assert client.gets == 1
    client.down = False
    assert reads.unreachable_until > 0
    reads.unreachable_until = 0.0  # as once the backoff is over
    assert asyncio.run(two_reads()) == [b"g1", b"g1"]
