"""Redis down when tally_hourly runs: the task fails clearly, Airflow retries, the run succeeds once
Redis is back, and the API answers 503 JSON meanwhile, then recovers without a restart.

Real Airflow (`airflow dags test`, which retries failed tasks for real), real Spark, and a
private Redis on a free port that is started only after the first attempt has failed.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_py
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.app.services import start_local_redis
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, event, write_events
from tests.support.airflow import AIRFLOW, prepared_env
from tests.support.cli import tally
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

HOUR = datetime(2026, 11, 25, 7, tzinfo=UTC)
PARAMS = {"grain": "hour", "start": "2026-11-25T07:00Z", "end": "2026-11-25T08:00Z"}


def wait_for_text(path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared:\n{path.read_text(errors='replace')[-4000:]}")


def test_airflow_retries_through_a_redis_outage_and_the_api_recovers(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    write_events(data_dir, HOUR, [event(f"e{i}", f"2026-11-25T07:{i:02d}:00") for i in range(5)])
    url = f"redis://127.0.0.1:{free_port()}/0"
    prefix = f"{TEST_PREFIX}-outage"
    env = prepared_env(
        tmp_path_factory.mktemp("airflow-home"),
        TALLY_DATA_DIR=str(data_dir),
        TALLY_REDIS_PREFIX=prefix,
        REDIS_URL=url,
        SPARK_MASTER="local[1]",
        AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="3",
    )
    log = tmp_path_factory.mktemp("logs") / "dags-test.log"
    redis_process = None
    with TestClient(create_app(Settings(redis_url=url, redis_prefix=prefix))) as api:
        during = api.get("/v1/metrics/events", params=PARAMS)
        assert during.status_code == 503 and during.json()["error"]["code"] == "redis_unavailable"
        assert api.get("/health").json()["redis"] == "unreachable"
        with log.open("w") as out:
            run = subprocess.Popen(
                [AIRFLOW, "dags", "test", "tally_hourly", (HOUR + timedelta(hours=1)).isoformat()],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for_text(log, f"Redis at {url} is unreachable", run, timeout=240)
                redis_process = start_local_redis(url, tmp_path_factory.mktemp("redis"))  # Redis is back
                run.wait(timeout=600)
            finally:
                if run.poll() is None:
                    run.kill()
                try:
                    output = log.read_text(errors="replace")
                    assert "state=success" in output, output[-4000:]
                    # The same app, never restarted, serves the run's numbers.
                    after = api.get("/v1/metrics/events", params=PARAMS)
                    assert after.status_code == 200, after.text
                    assert after.json()["series"][0]["points"][0] == {
                        "ts": "2026-11-25T07:00:00Z",
                        "value": 5,
                        "complete": True,
                        "revised": False,
                    }
                    assert api.get("/health").json()["pending_hours"] == []
                finally:
                    if redis_process is not None:
                        redis_process.terminate()
                        redis_process.wait(timeout=10)


def test_redis_restarted_empty_then_rehydrated_serves_every_point_again(spark, tmp_path_factory):
    """A real restart (no persistence): the same API says cache_cold, then `tally rehydrate` brings all back."""
    spec = load_spec(DEFAULT_SPEC_PATH)
    data_dir = tmp_path_factory.mktemp("data")
    hours = [HOUR + timedelta(hours=i) for i in range(6)]
    for i, hour in enumerate(hours):
        write_events(data_dir, hour, [event(f"h{i}-{j}", f"{hour:%Y-%m-%dT%H}:{j:02d}:00") for j in range(i + 1)])
    run_hours(spark, data_dir, spec, hours)
    url = f"redis://127.0.0.1:{free_port()}/0"
    layout = KeyLayout(f"{TEST_PREFIX}-restart")
    queries = [
        ("events", {"grain": "hour", "start": "2026-11-25T07:00Z", "end": "2026-11-25T13:00Z"}),
        ("active_users", {"grain": "day", "start": "2026-11-25", "end": "2026-11-26", "group_by": "country"}),
    ]
    process = start_local_redis(url, tmp_path_factory.mktemp("redis"))
    try:
        publish_hours(redis_py.Redis.from_url(url), layout, data_dir, spec, hours, PublishOptions(superseded_ttl=60))
        with TestClient(create_app(Settings(redis_url=url, redis_prefix=layout.prefix))) as api:

            def answers() -> list[dict]:
                bodies = [api.get(f"/v1/metrics/{m}", params=p).json() for m, p in queries]
                return [{k: v for k, v in body.items() if k not in ("as_of", "build")} for body in bodies]

            before = answers()
            assert [p["value"] for p in before[0]["series"][0]["points"]] == [1, 2, 3, 4, 5, 6]
            process.terminate()
            process.wait(timeout=10)
            process = start_local_redis(url, tmp_path_factory.mktemp("redis-again"))  # back, and empty
            cold = api.get("/v1/metrics/events", params=queries[0][1])
            assert cold.status_code == 503 and cold.json()["error"]["code"] == "cache_cold"
            assert api.get("/health").json()["cache"] == "cold"
            result = tally(data_dir, layout, url, "rehydrate")
            assert result.returncode == 0 and "rehydrated 6 hour(s)" in result.stdout, result.stderr[-2000:]
            assert answers() == before
    finally:
        process.terminate()
        process.wait(timeout=10)
