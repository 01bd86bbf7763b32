"""The Redis prefix and API process a benchmark (or a test) runs against, and where results go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from cache.keys import KeyLayout
from tally.app.services import start_local_redis
from tally.core.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def start_server(redis_url: str, prefix: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`tally serve` in its own process for ``prefix`` (plus settings in ``env``); returns once /health answers."""
    # The child reads its settings from this environment; nothing here reads configuration.
    # Benchmark data sets sit on fixed dates, which a retention counted back from now would
    # leave behind: their hours are served forever unless the caller says otherwise.
    env = {
        "TALLY_HOUR_RETENTION_DAYS": "0",
        **os.environ,
        **(env or {}),
        "REDIS_URL": redis_url,
        "TALLY_REDIS_PREFIX": prefix,
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tally")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(150):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"tally serve did not answer on port {port}")


@contextmanager
def bench_redis(name: str) -> Iterator[tuple[str, redis.Redis, KeyLayout]]:
    """(REDIS_URL, a client, a private prefix): a local Redis is started if none answers,
    and the prefix's keys (only those) are deleted afterwards."""
    url = get_settings().redis_url
    local = start_local_redis(url, ROOT / ".tally" / "bench-redis")
    client = redis.Redis.from_url(url)
    layout = KeyLayout(f"tally-bench-{name}-{os.getpid()}")
    try:
        yield url, client, layout
    finally:
        keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i : i + 5000])
        if local is not None:
            local.terminate()


def stop(server: subprocess.Popen | None) -> None:
    if server is not None:
        server.terminate()
        server.wait(timeout=10)


def write_results(name: str, results: dict) -> None:
    out = ROOT / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def staying_keys(client: redis.Redis, layout: KeyLayout) -> list[tuple[str, int]]:
    """(key, bytes) of every key under the prefix that stays: MEMORY USAGE (exact), keys left expiring not counted."""
    keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=5000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
        pipe.ttl(key)
    replies = pipe.execute()
    staying = zip(keys, replies[::2], replies[1::2], strict=True)
    return [(key.decode(), size or 0) for key, size, ttl in staying if ttl < 0]
