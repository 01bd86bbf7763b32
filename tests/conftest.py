"""Shared fixtures: one Redis (started if none answers), one Spark session, raw-file helpers.

Tests use their own Redis key prefix and delete only keys under it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import redis

from cache.keys import KeyLayout
from tally.app.services import start_local_redis
from tally.core.layout import raw_hour_dir

TEST_REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every Redis key prefix a test uses starts with this: one per session, so the leftover
# check below sees this run's keys only, whatever other runs share the server.
TEST_PREFIX = f"tally-test-{uuid.uuid4().hex[:8]}"
ROOT = Path(__file__).resolve().parents[1]

# Whatever the developer's shell says, everything a test starts (Settings(), the CLI, Airflow
# subprocesses) talks to the test Redis, and under a test prefix unless the test picks its own.
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ.pop("TALLY_API_REDIS_URL", None)
os.environ["TALLY_REDIS_PREFIX"] = f"{TEST_PREFIX}-default"
# Tests pin their hours to fixed dates, which fall out of a retention counted back from now as
# the calendar moves on: the hour tier keeps hours forever unless a test sets a retention itself
# (tests/test_tiers.py covers the default of 14 days with a fixed `now`).
os.environ["TALLY_HOUR_RETENTION_DAYS"] = "0"
# Every JVM a test starts reads these Spark defaults (why: the file's comment).
os.environ.setdefault("SPARK_CONF_DIR", str(ROOT / "tests" / "support" / "spark-conf"))


_REDIS_PROCESS = pytest.StashKey[tuple[subprocess.Popen | None, Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """Start a Redis at TEST_REDIS_URL unless one answers: once, in the process that runs pytest.

    With pytest-xdist (`make test` runs two workers) that is the controller, before any worker
    starts, so the workers never race to start one; each of them is its own test session.
    """
    if hasattr(config, "workerinput"):
        return
    state = Path(tempfile.mkdtemp(prefix="tally-test-redis-"))
    config.stash[_REDIS_PROCESS] = (start_local_redis(TEST_REDIS_URL, state), state)


def pytest_unconfigure(config: pytest.Config) -> None:
    process, state = config.stash.get(_REDIS_PROCESS, (None, None))
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
    if state is not None:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[str]:
    """The Redis at TEST_REDIS_URL (see pytest_configure).

    At the end, no key of this session (``TEST_PREFIX``, one per xdist worker) may be left in
    any database of that server: every test deletes what it wrote.
    """
    yield TEST_REDIS_URL
    with redis.Redis.from_url(TEST_REDIS_URL) as client:
        delete_prefix(client, KeyLayout(os.environ["TALLY_REDIS_PREFIX"]))
    left = keys_of_tests(TEST_REDIS_URL)
    assert not left, f"{len(left)} test key(s) left behind (database, key): {left[:10]}"


def keys_of_tests(url: str) -> list[tuple[int, bytes]]:
    """Every key of this session's tests in every database of the server at ``url``, with its database."""
    client = redis.Redis.from_url(url)
    try:
        databases = int(client.config_get("databases").get("databases", 16))
        found = []
        for db in range(databases):
            # A URL's own /db wins over from_url's db argument: rewrite the path instead.
            with redis.Redis.from_url(urlsplit(url)._replace(path=f"/{db}").geturl()) as other:
                found += [(db, key) for key in other.scan_iter(match=f"{TEST_PREFIX}*", count=1000)]
        return found
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


@pytest.fixture
def layout(redis_client: redis.Redis) -> Iterator[KeyLayout]:
    """A fresh key prefix for one test; its keys (and only those) are deleted afterwards."""
    layout = KeyLayout(f"{TEST_PREFIX}-{uuid.uuid4().hex[:12]}")
    yield layout
    delete_prefix(redis_client, layout)


def delete_prefix(client: redis.Redis, layout: KeyLayout) -> None:
    keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=1000))
    if keys:
        client.delete(*keys)


def dump_prefix(client: redis.Redis, layout: KeyLayout) -> dict[bytes, object]:
    """A canonical dump of every key under the prefix (for before/after comparisons)."""
    dump: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(match=layout.all_keys_pattern(), count=1000)):
        kind = client.type(key)
        if kind == b"hash":
            dump[key] = dict(sorted(client.hgetall(key).items()))
        elif kind == b"string":
            dump[key] = client.get(key)
        else:
            dump[key] = kind
    return dump


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole run (starting one costs ~10 s)."""
    from jobs.session import build_session

    session = build_session("local[2]", app_name="tally-tests", extra={"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


def event(
    event_id: str | None,
    event_time: str | None,
    user_id: str | None = "u1",
    event_type: str | None = "page_view",
    amount: float | None = None,
    country: str | None = "US",
    platform: str | None = "web",
    session_id: str | None = "s1",
) -> dict[str, object]:
    """One raw event row (times are UTC)."""
    return {
        "event_id": event_id,
        "event_time": pd.Timestamp(event_time, tz="UTC") if event_time else None,
        "user_id": user_id,
        "session_id": session_id,
        "event_type": event_type,
        "amount": amount,
        "country": country,
        "platform": platform,
    }


def write_events(
    data_dir: Path, hour: datetime, rows: list[dict[str, object]], name: str = "part-0.parquet", **to_parquet: object
) -> Path:
    """Write rows as one Parquet file of the hour's input folder (pandas defaults: ns timestamps)."""
    folder = raw_hour_dir(data_dir, hour)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=list(event("x", "2026-01-01").keys()))
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["amount"] = frame["amount"].astype("float64")
    path = folder / name
    frame.to_parquet(path, index=False, **to_parquet)
    return path


@pytest.fixture(scope="module")
def browser():
    """A headless chromium per test module (tests/support/browser.py); fails, not skips, without one."""
    from tests.support.browser import CHROMEDRIVER, CHROMIUM, start_chromium

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"the browser tests need {CHROMIUM} and {CHROMEDRIVER}: run scripts/install-chromium")
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


# Markers from what a test needs, so a new test is sorted without anyone remembering to:
# `make test-fast` runs what is left (unit and API tests against Redis).
_MARKED_BY_FIXTURE = {"spark": "slow", "browser": "browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _MARKED_BY_FIXTURE.items():
            if fixture in fixtures:
                item.add_marker(marker)
        if item.get_closest_marker("e2e") is not None:
            item.add_marker("slow")
