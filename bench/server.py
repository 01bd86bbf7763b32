"""The API process and Redis prefix a benchmark (or a test) runs against, started and cleaned up alike."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from cache.keys import KeyLayout


def start_server(redis_url: str, prefix: str, port: int) -> subprocess.Popen:
    """`tally serve` in its own process for ``prefix``; returns once /health answers."""
    env = {**os.environ, "REDIS_URL": redis_url, "TALLY_REDIS_PREFIX": prefix}
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


def stop(server: subprocess.Popen | None, client: redis.Redis, layout: KeyLayout) -> None:
    """Stop the server and delete the benchmark's keys (only those under its prefix)."""
    if server is not None:
        server.terminate()
        server.wait(timeout=10)
    keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])
