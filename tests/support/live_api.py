"""A live `tally serve` over published data, for tests of HTTP clients (tests/test_client.py, tests/test_api_csv.py).

Rollups of synthetic events with real sketches (tests/support/rollups.py) are
written for six UTC days around the end of US daylight saving time (2026-11-01),
rehydrated into Redis under a prefix of this session, and served by a `tally serve`
subprocess (bench.server.start_server). Expected answers come from the API's JSON:
these helpers test representations of it (DataFrames, CSV), not the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis

from bench.server import start_server, stop
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.rehydrate import rehydrate
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.net import free_port
from tests.support.rollups import write_synthetic_hour

FIRST_HOUR = datetime(2026, 10, 29, tzinfo=UTC)
HOURS = [FIRST_HOUR + timedelta(hours=i) for i in range(24 * 6)]
SPEC = load_spec(DEFAULT_SPEC_PATH)


@dataclass(frozen=True)
class LiveApi:
    url: str
    layout: KeyLayout


@contextmanager
def live_api(redis_url: str, folder: Path) -> Iterator[LiveApi]:
    """Publish the data set under a fresh prefix and serve it; the prefix's keys are deleted afterwards."""
    for index, hour in enumerate(HOURS):
        write_synthetic_hour(folder, hour, SPEC, seed=index)
    layout = KeyLayout(f"{TEST_PREFIX}-live-{uuid.uuid4().hex[:8]}")
    with redis.Redis.from_url(redis_url) as client:
        try:
            rehydrate(client, layout, folder, SPEC, PublishOptions(superseded_ttl=60))
            port = free_port()
            server = start_server(redis_url, layout.prefix, port, {"TALLY_DATA_DIR": str(folder)})
            try:
                yield LiveApi(f"http://127.0.0.1:{port}", layout)
            finally:
                stop(server)
        finally:
            delete_prefix(client, layout)


@contextmanager
def server_without_redis(redis_db: int) -> Iterator[str]:
    """`tally serve` pointed at a port nothing listens on: every read answers 503 redis_unavailable."""
    port, dead = free_port(), free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{dead}/{redis_db}", "TALLY_REDIS_PREFIX": f"{TEST_PREFIX}-nowhere"}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tally")), "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_any_answer(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


def _wait_for_any_answer(url: str) -> None:
    # start_server waits for a 200, which a server without Redis never gives.
    for _ in range(150):
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"tally serve did not answer at {url}")


def requests_answered(base_url: str, route: str, status: int) -> float:
    """The server's own count of GETs of ``route`` it answered with ``status`` (its Prometheus /metrics)."""
    line = f'tally_api_requests_total{{method="GET",route="{route}",status="{status}"}} '
    found = [text for text in httpx.get(f"{base_url}/metrics").text.splitlines() if text.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0
