"""Opening a Redis connection with a clear error when nothing answers."""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.typing import EncodableT, FieldT

# Tally's clients never set decode_responses, so replies are bytes; redis-py types them
# ``bytes | str`` (the decoding is a runtime option), and its hash mappings with invariant keys.


def text(reply: bytes | str) -> str:
    """A reply as text (Tally's replies are bytes; redis-py's types allow str)."""
    return reply.decode() if isinstance(reply, bytes) else reply


def hash_fields(fields: Mapping[str, str | bytes]) -> dict[FieldT, EncodableT]:
    """``fields`` as redis-py types an HSET mapping."""
    mapping: dict[FieldT, EncodableT] = {}
    mapping.update(fields)
    return mapping


class RedisUnavailableError(ConnectionError):
    """Redis did not answer; the message names the URL (without its password)."""


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    parsed = redis.connection.parse_url(url)
    if parsed.get("password"):
        return url.replace(f":{parsed['password']}@", ":***@")
    return url


def connect(url: str, *, timeout: float = 5.0, check: bool = True) -> redis.Redis:
    """A client for ``url``; with ``check`` it pings and raises RedisUnavailableError."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    if check:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise RedisUnavailableError(f"Redis at {safe_url(url)} is unreachable: {exc}") from exc
    return client
