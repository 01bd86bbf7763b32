"""`make up` with Airflow's metadata in PostgreSQL: the scheduler's LocalExecutor runs tally_hourly.

Creates a fresh PostgreSQL database, starts the local stack with
TALLY_AIRFLOW_DATABASE_URL pointing at it (what `make up AIRFLOW_DB=<url>`
does) and a Spark Connect server (`make up SPARK=connect`), triggers
tally_hourly for an hour whose input exists through Airflow's REST API, and
waits for the run to succeed. Then it checks that the hour was
published to Redis and that the run, its task instances and the scheduler job
that queued them are rows of that PostgreSQL database, and that the aggregate task
computed on the stack's Connect server. The database is dropped
and every process group stopped afterwards, also on failure.

Needs a PostgreSQL at TALLY_TEST_POSTGRES_URL (default: the local server, trust
auth); skipped when none answers, except in CI. The fast tests above it pin the
setting and the clear failure when no PostgreSQL answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cache.keys import TOTAL_SLICE, KeyLayout
from tally.app.generate import generate_hours
from tally.app.local import airflow_env
from tally.app.services import PostgresUnavailableError, drop_postgres_database, ensure_postgres_database
from tally.core.layout import floor_hour, hour_field
from tally.core.settings import LOCAL_AIRFLOW_DATABASE_URL, Settings
from tests.conftest import TEST_PREFIX
from tests.support.airflow import local_stack
from tests.support.net import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
TEST_POSTGRES_URL = os.environ.get("TALLY_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def test_the_setting_takes_postgres_urls_and_a_shorthand_for_the_local_server():
    assert Settings().airflow_database_url is None
    assert Settings(airflow_database_url="postgres").airflow_database_url == LOCAL_AIRFLOW_DATABASE_URL
    assert Settings(airflow_database_url=" ").airflow_database_url is None
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        Settings(airflow_database_url="sqlite:///airflow.db")


def test_airflow_env_points_airflow_at_the_database_with_the_local_executor(tmp_path: Path):
    url = "postgresql+psycopg2://airflow@db.example:5432/airflow"
    env = airflow_env(tmp_path, base={}, database_url=url)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in airflow_env(tmp_path, base={})


def test_up_fails_fast_naming_the_url_when_no_postgres_answers(tmp_path: Path):
    url = f"postgresql+psycopg2://postgres:secret@127.0.0.1:{free_port()}/tally_airflow"
    env = {**os.environ, "TALLY_AIRFLOW_DATABASE_URL": url, "TALLY_LOCAL_STATE": str(tmp_path / "state")}
    up = subprocess.run(
        [sys.executable, "-m", "tally.app.local", "up"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert up.returncode == 1
    assert url.replace(":secret@", ":***@") in up.stderr and "secret" not in up.stderr
    assert "Traceback" not in up.stderr
    assert not (tmp_path / "state" / "run").exists()  # nothing was started


@pytest.fixture
def airflow_database() -> str:
    """The URL of a new, uniquely named database, dropped afterwards."""
    url = sa.make_url(TEST_POSTGRES_URL).set(database=f"tally_airflow_test_{uuid.uuid4().hex[:12]}")
    url_text = url.render_as_string(hide_password=False)
    try:
        ensure_postgres_database(url_text)
    except PostgresUnavailableError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL for this test: {exc}")
    try:
        yield url_text
    finally:
        drop_postgres_database(url_text)


@pytest.fixture
def stack(tmp_path: Path, redis_server: str, redis_client, airflow_database: str):
    prefix = f"{TEST_PREFIX}-airflow-pg-{uuid.uuid4().hex[:8]}"
    # The production-like stack also runs its Spark on a Connect server (`make up SPARK=connect`): the
    # LocalExecutor's task processes are Connect clients. The default in-process stack is test_stack's.
    extra = {
        "TALLY_AIRFLOW_DATABASE_URL": airflow_database,
        "AIRFLOW__CORE__PARALLELISM": "3",
        "TALLY_LOCAL_SPARK": "connect",
        "TALLY_CONNECT_PORT": str(free_port()),
    }
    with local_stack(tmp_path, redis_server, redis_client, prefix, **extra) as (env, output):
        assert "LocalExecutor" in output, output
        assert f"Connect server at sc://127.0.0.1:{extra['TALLY_CONNECT_PORT']}" in output, output
        yield env, KeyLayout(prefix)


@pytest.mark.e2e
def test_hourly_run_on_postgres_with_the_local_executor(stack, redis_client, airflow_database: str):
    env, layout = stack
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=3)
    generate_hours(Path(env["TALLY_DATA_DIR"]), [hour], events_per_hour=200, seed=11)

    airflow = f"http://127.0.0.1:{env['TALLY_AIRFLOW_PORT']}"
    password_file = Path(env["TALLY_AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text())["admin"]
    token = httpx.post(f"{airflow}/auth/token", json={"username": "admin", "password": password}, timeout=30).json()
    # Generous timeouts: the API server shares two cores with the scheduler and Spark.
    client = httpx.Client(
        base_url=f"{airflow}/api/v2", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30
    )
    wait_for(lambda: client.get("/dags/tally_hourly").status_code == 200, 180, "tally_hourly to be parsed")
    # A manual run of the hour that ended at its logical date; the scheduler starts runs of unpaused DAGs only
    # (unpausing also schedules the newest hour, whose input never arrives: its sensor just waits).
    run_id = f"pg_{uuid.uuid4().hex[:8]}"
    end = hour + timedelta(hours=1)
    body = {
        "dag_run_id": run_id,
        "logical_date": end.isoformat(),
        "data_interval_start": hour.isoformat(),
        "data_interval_end": end.isoformat(),
    }
    triggered = client.post("/dags/tally_hourly/dagRuns", json=body)
    assert triggered.status_code == 200, triggered.text
    assert client.patch("/dags/tally_hourly", json={"is_paused": False}).status_code == 200

    def finished() -> str | None:
        try:
            state = client.get(f"/dags/tally_hourly/dagRuns/{run_id}").json()["state"]
        except httpx.TimeoutException:
            return None
        return state if state in ("success", "failed") else None

    assert wait_for(finished, 300, f"tally_hourly run {run_id} to finish") == "success"

    # The hour is live in Redis under the test's prefix.
    pointer = redis_client.hget(layout.pointer(), hour_field(hour))
    assert pointer is not None
    build = json.loads(pointer)["build"]
    events = redis_client.hget(layout.values(build, hour_field(hour), "events"), TOTAL_SLICE)
    assert events is not None and float(events) > 0

    # Airflow's metadata is in the PostgreSQL database: the run, and task instances that the scheduler's
    # executor ran in their own processes (`airflow dags test` would have run them in-process, unqueued).
    engine = sa.create_engine(airflow_database, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as db:
            run_state = db.execute(
                sa.text("SELECT state FROM dag_run WHERE dag_id = 'tally_hourly' AND run_id = :run_id"),
                {"run_id": run_id},
            ).scalar_one()
            tasks = db.execute(
                sa.text(
                    "SELECT ti.task_id, ti.state, ti.pid, job.job_type FROM task_instance ti "
                    "JOIN job ON job.id = ti.queued_by_job_id WHERE ti.dag_id = 'tally_hourly' AND ti.run_id = :run_id"
                ),
                {"run_id": run_id},
            ).all()
    finally:
        engine.dispose()
    assert run_state == "success"
    assert {t.task_id for t in tasks} == {"find_stale", "wait_for_input", "aggregate", "publish", "check_late_input"}
    assert all(t.state == "success" and t.job_type == "SchedulerJob" for t in tasks), tasks
    assert all(t.pid for t in tasks), tasks
    # ... by the LocalExecutor's worker processes (the job table leaves executor_class empty in Airflow 3.3).
    scheduler_log = (Path(env["TALLY_LOCAL_STATE"]) / "logs" / "airflow.log").read_text(errors="replace")
    assert "Loaded executor: :LocalExecutor:" in scheduler_log
    # ... whose aggregate task computed on the stack's Connect server, not in a JVM of its own.
    task_logs = "".join(p.read_text(errors="replace") for p in Path(env["TALLY_AIRFLOW_HOME"]).rglob("*.log"))
    assert f"on the Spark Connect server at sc://127.0.0.1:{env['TALLY_CONNECT_PORT']}" in task_logs
    assert "Worker starting up" in scheduler_log
