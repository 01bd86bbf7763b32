"""HTTP caching of metric reads: ETag from the builds read, Cache-Control until the next publish, 304s.

The response cache (:mod:`dashboard_api.response_cache`) shares these rules, so a
cached answer and a fresh one carry the same headers.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.utils import format_datetime

from fastapi import Request

from cache.keys import parse_published_at


def caching_headers(request: Request, version: str, as_of: str | None, now: datetime, lag: int) -> dict[str, str]:
    """ETag (the builds read plus the exact query), Cache-Control until the next publish, Last-Modified."""
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    etag = hashlib.sha256(f"{request.url.path}?{query}#{version}".encode()).hexdigest()[:24]
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control(now, lag)}
    if as_of:
        published = parse_published_at(as_of)
        headers["Last-Modified"] = format_datetime(published, usegmt=True)
    return headers


def cache_control(now: datetime, lag: int) -> str:
    """Shared caches may keep a series until the next hourly publish is expected."""
    return f"public, max-age={seconds_to_next_publish(now, lag)}"


def seconds_to_next_publish(now: datetime, lag: int) -> int:
    """Seconds until the next hourly publish is expected: the top of an hour plus ``lag``."""
    expected = now.replace(minute=0, second=0, microsecond=0) + timedelta(seconds=lag)
    if expected <= now:
        expected += timedelta(hours=1)
    return max(1, int((expected - now).total_seconds()))


def not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
