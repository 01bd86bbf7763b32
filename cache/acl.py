"""Redis ACL users for Tally: a writer for the jobs and a read-only user for the API.

Both users see only keys under the prefix (``~{prefix}:*``) and only the commands
listed here, which are exactly the ones the publishing modules (:mod:`cache.publish`
and the modules it composes, :mod:`cache.rollback`, :mod:`cache.rehydrate`),
:mod:`cache.freshness` and :mod:`dashboard_api.store` send. The API's user
cannot write, delete, flush, list keys or run scripts, so a compromised API
process cannot change or enumerate what it serves.

``tally redis-acl`` prints the ``ACL SETUSER`` lines for a Redis that Tally does
not manage; the local stack (``make up``/``demo``) applies them to the Redis it
starts (:func:`create_users`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote

import redis

# SELECT: a URL naming a database other than 0. PING: health checks and `connect`.
_CONNECTION = ("ping", "select")
# XRANGE, XREVRANGE, XREAD: the API's publish events (cache.events) for /v1/events.
READER_COMMANDS: tuple[str, ...] = (
    *_CONNECTION,
    "exists",
    "get",
    "hget",
    "hmget",
    "hgetall",
    "hkeys",
    "xrange",
    "xrevrange",
    "xread",
)
WRITER_COMMANDS: tuple[str, ...] = (
    *READER_COMMANDS,
    "lrange",
    "set",
    "del",
    "expire",
    "persist",
    "rename",
    "hset",
    "hsetnx",
    "hdel",
    "rpush",
    "xadd",  # a publish event, trimmed to TALLY_EVENTS_KEEP in the same command
    "watch",
    "unwatch",
    "multi",
    "exec",
    "discard",
    # The newest-hour update is one small script; scripts run with the caller's ACL.
    "eval",
    "evalsha",
    # The storage report and the budget check (cache.storage, cache.prepublish): SCAN under the
    # prefix (the ACL cannot filter SCAN's answer, so the writer may see other keys' names, never
    # their content), the size of keys, and putting back keys a refused publish overwrote.
    "scan",
    "memory|usage",
    "hlen",
    "dump",
    "restore",
    "pttl",
)


@dataclass(frozen=True)
class Users:
    reader: str
    writer: str


def user_names(prefix: str) -> Users:
    """One pair of users per prefix, so deployments sharing a Redis stay apart."""
    return Users(reader=f"{prefix}-api", writer=f"{prefix}-writer")


def rules(prefix: str, commands: tuple[str, ...]) -> list[str]:
    """ACL rules: only keys under the prefix, no channels, only ``commands``."""
    return ["resetkeys", f"~{prefix}:*", "resetchannels", "-@all", *(f"+{command}" for command in commands)]


def setuser_line(user: str, password: str, user_rules: list[str]) -> str:
    """The ``ACL SETUSER`` line (for redis-cli or an ACL file) creating ``user`` from scratch."""
    return " ".join(["ACL SETUSER", user, "reset", "on", f">{password}", *user_rules])


def acl_lines(prefix: str, reader_password: str, writer_password: str) -> str:
    users = user_names(prefix)
    return "\n".join(
        [
            setuser_line(users.writer, writer_password, rules(prefix, WRITER_COMMANDS)),
            setuser_line(users.reader, reader_password, rules(prefix, READER_COMMANDS)),
        ]
    )


def user_url(url: str, user: str, password: str) -> str:
    """``url`` authenticating as ``user`` (any credentials already in it are replaced)."""
    scheme, _, rest = url.partition("://")
    host = rest.rpartition("@")[2]
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}"


def create_users(admin: redis.Redis, prefix: str, url: str) -> dict[str, str]:
    """Create (or reset) the prefix's writer and reader with new passwords; return their URLs.

    Returns ``{"REDIS_URL": writer URL, "TALLY_API_REDIS_URL": reader URL}``,
    the settings the jobs and the API read.
    """
    users = user_names(prefix)
    passwords = {users.writer: secrets.token_urlsafe(24), users.reader: secrets.token_urlsafe(24)}
    for user, commands in ((users.writer, WRITER_COMMANDS), (users.reader, READER_COMMANDS)):
        admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{passwords[user]}", *rules(prefix, commands))
    return {
        "REDIS_URL": user_url(url, users.writer, passwords[users.writer]),
        "TALLY_API_REDIS_URL": user_url(url, users.reader, passwords[users.reader]),
    }
