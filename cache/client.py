"""Opening a Redis connection with a clear error when nothing answers."""

from __future__ import annotations

import redis


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
