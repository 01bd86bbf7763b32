"""Tally's Airflow asset, through real Airflow: the publishing DAGs' events and the report DAG they feed.

One Airflow home (SQLite) and one Redis prefix for the module; the tests run in order, each on
what the previous left. Hours 00..22 of the day are durable rollups written without Spark
(tests/support/rollups.py), hour 23 raw events: `tally_hourly` for hour 23 computes that hour in
Spark and publishes the whole day, so the day is complete. The asset events are read back from
Airflow's metadata DB with the ORM, in a child process (the Airflow home never leaks in here).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import start_server
from cache.keys import KeyLayout
from tally.core.layout import format_hour
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix, event, write_events
from tests.support.airflow import prepared_env, run_airflow
from tests.support.net import free_port
from tests.support.rollups import write_synthetic_hour

pytestmark = pytest.mark.e2e

SPEC = load_spec(DEFAULT_SPEC_PATH)
T0 = datetime(2026, 11, 26, tzinfo=UTC)
HOURS = [T0 + timedelta(hours=h) for h in range(24)]
DAY_HOURS = [format_hour(h) for h in HOURS]
CARDS = ["revenue", "orders", "avg_order_value", "active_users", "conversion_rate"]

# Every asset event, and the asset-triggered runs the scheduler has queued, as JSON.
READ_EVENTS = r"""
import json
from sqlalchemy import select
from airflow.models.asset import AssetAliasModel, AssetDagRunQueue, AssetEvent
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session

with create_session() as session:
    events = [
        {
            "uri": e.asset.uri,
            "extra": e.extra,
            "dag_id": e.source_dag_id,
            "task_id": e.source_task_id,
            "aliases": [a.name for a in e.source_aliases],
        }
        for e in session.scalars(select(AssetEvent).order_by(AssetEvent.id))
    ]
    queued = sorted({q.target_dag_id for q in session.scalars(select(AssetDagRunQueue))})
    # What `dags test` registered of every DAG: each task's outlets, and who is scheduled on the alias.
    outlets = {}
    for dag_id in session.scalars(select(SerializedDagModel.dag_id)):
        tasks = SerializedDagModel.get_dag(dag_id).tasks
        outlets |= {dag_id: {t.task_id: [o.name for o in t.outlets] for t in tasks if t.outlets}}
    outlets = {dag_id: tasks for dag_id, tasks in outlets.items() if tasks}
    [alias] = session.scalars(select(AssetAliasModel).where(AssetAliasModel.name == "tally-metrics"))
    scheduled = sorted(ref.dag_id for ref in alias.scheduled_dags)
print(json.dumps({"events": events, "queued": queued, "outlets": outlets, "scheduled": scheduled}))
"""

# The scheduler's own step that turns queued asset events into asset-triggered runs, alone: a whole
# scheduler would also need an API server and an executor to run the task, which `tasks test` does here.
CREATE_ASSET_TRIGGERED_RUNS = r"""
import json
from sqlalchemy import select
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from airflow.utils.sqlalchemy import prohibit_commit

with create_session() as session, prohibit_commit(session) as guard:
    SchedulerJobRunner(job=Job(), num_runs=1)._create_dagruns_for_dags(guard, session)
with create_session() as session:
    triggered = DagRun.dag_id == "tally_daily_report", DagRun.run_type == "asset_triggered"
    runs = session.scalars(select(DagRun).where(*triggered).order_by(DagRun.run_after))
    print(json.dumps([{"run_id": r.run_id, "events": [e.extra for e in r.consumed_asset_events]} for r in runs]))
"""


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    data_dir: Path
    prefix: str
    api: str  # `tally serve` on the prefix

    @property
    def uri(self) -> str:
        return f"tally://{self.prefix}/metrics"

    @property
    def report(self) -> Path:
        return self.data_dir / "reports" / "2026-11-26.csv"


def airflow_ok(env: dict[str, str], *args: str) -> str:
    result = run_airflow(env, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in output, output[-4000:]
    return output


def in_airflow(env: dict[str, str], script: str) -> Any:
    """Run ``script`` against the Airflow home of ``env``; its last line of output, as JSON."""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def asset_state(env: dict[str, str]) -> dict:
    return in_airflow(env, READ_EVENTS)


def report_rows(stack: Stack) -> list[dict[str, str]]:
    with stack.report.open(newline="") as handle:
        return list(csv.DictReader(handle))


def api_values(stack: Stack, metric: str) -> list[float | None]:
    params = {"grain": "hour", "start": "2026-11-26", "end": "2026-11-27"}
    response = httpx.get(f"{stack.api}/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    [series] = response.json()["series"]
    return [point["value"] for point in series["points"]]


def assert_report_is_the_api(stack: Stack) -> list[dict[str, str]]:
    rows = report_rows(stack)
    assert [r["hour"] for r in rows] == DAY_HOURS
    assert list(rows[0]) == ["hour", *CARDS]
    for metric in CARDS:
        assert [float(r[metric]) if r[metric] else None for r in rows] == api_values(stack, metric), metric
    assert stack.report.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rows


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Stack]:
    import redis

    data_dir = tmp_path_factory.mktemp("data")
    for hour in HOURS[:23]:
        write_synthetic_hour(data_dir, hour, SPEC, seed=hour.hour)
    late_evening = [event(f"e{i}", f"2026-11-26T23:{i:02d}:00", user_id=f"u{i % 7}") for i in range(30)]
    write_events(data_dir, HOURS[23], late_evening)
    prefix = f"{TEST_PREFIX}-assets-{os.getpid()}"
    env = prepared_env(
        tmp_path_factory.mktemp("airflow-home"),
        TALLY_DATA_DIR=str(data_dir),
        TALLY_REDIS_PREFIX=prefix,
        REDIS_URL=redis_server,
        SPARK_MASTER="local[2]",
    )
    port = free_port()
    server = start_server(redis_server, prefix, port)
    try:
        yield Stack(env=env, data_dir=data_dir, prefix=prefix, api=f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        client = redis.Redis.from_url(redis_server)
        delete_prefix(client, KeyLayout(prefix))
        client.close()


def test_hourly_publish_announces_its_hours_on_the_asset(stack):
    # The manual run at 00:00 processes hour 23, and publishes the 23 rollups it found unpublished with it
    # (the prefix is empty: all 24 come in through the rehydrate, and this task made them live).
    airflow_ok(stack.env, "dags", "test", "tally_hourly", "2026-11-27T00:00:00+00:00")
    state = asset_state(stack.env)
    [announced] = state["events"]
    assert (announced["uri"], announced["dag_id"], announced["task_id"]) == (stack.uri, "tally_hourly", "publish")
    assert announced["aliases"] == ["tally-metrics"]
    assert announced["extra"] == {"prefix": stack.prefix, "hours": DAY_HOURS, "revised": [], "rehydrated": 24}
    # `dags test` registered every DAG of the folder, paused: no asset-triggered run is queued yet.
    assert state["queued"] == []
    assert state["scheduled"] == ["tally_daily_report"]
    assert state["outlets"] == {
        "tally_hourly": {"publish": ["tally-metrics"]},
        "tally_recompute": {"publish_range": ["tally-metrics"]},
        "tally_reconcile": {"publish": ["tally-metrics"]},
    }


def test_a_publish_that_changes_nothing_announces_nothing(stack):
    # Nothing changed since tally_hourly: the reconcile run's publish task succeeds with nothing to publish,
    # and its alias outlet gets no asset: no event, so no downstream run for unchanged numbers.
    output = airflow_ok(stack.env, "dags", "test", "tally_reconcile", "2026-11-27T03:30:00+00:00")
    assert f"nothing published: no event on {stack.uri}" in output
    assert len(asset_state(stack.env)["events"]) == 1


def test_the_report_dag_writes_the_completed_day_with_the_api_values(stack):
    assert not stack.report.exists()
    # A manual run has no triggering events: it reads the asset's latest ones (the hourly run's).
    output = airflow_ok(stack.env, "dags", "test", "tally_daily_report")
    assert "1 latest (a manual run) asset event(s), naming day(s) ['2026-11-26']" in output
    assert "daily report 2026-11-26: written" in output
    assert_report_is_the_api(stack)
    manifest = json.loads(stack.report.with_suffix(".json").read_text())
    assert sorted(manifest["builds"]) == DAY_HOURS and manifest["metrics"] == CARDS


def test_a_revised_hour_is_announced_and_the_day_reported_again(stack):
    before = report_rows(stack)
    # From now on the scheduler starts the report DAG on each event (unpaused, as in production).
    assert run_airflow(stack.env, "dags", "unpause", "tally_daily_report").returncode == 0
    write_synthetic_hour(stack.data_dir, HOURS[5], SPEC, seed=777)  # what a recompute of late data writes
    airflow_ok(stack.env, "dags", "test", "tally_reconcile", "2026-11-28T03:30:00+00:00")
    revision = asset_state(stack.env)["events"][-1]
    assert (revision["dag_id"], revision["task_id"]) == ("tally_reconcile", "publish")
    hour = [DAY_HOURS[5]]
    assert revision["extra"] == {"prefix": stack.prefix, "hours": hour, "revised": hour, "rehydrated": 0}

    assert asset_state(stack.env)["queued"] == ["tally_daily_report"]
    # As the scheduler does: one asset-triggered run of every event since the DAG's last such run (none).
    [run] = in_airflow(stack.env, CREATE_ASSET_TRIGGERED_RUNS)
    assert sorted((event["hours"] for event in run["events"]), key=len) == [hour, DAY_HOURS]
    output = airflow_ok(stack.env, "tasks", "test", "tally_daily_report", "write_reports", run["run_id"])
    assert "2 triggering asset event(s), naming day(s) ['2026-11-26']" in output
    assert "daily report 2026-11-26: written" in output
    after = assert_report_is_the_api(stack)
    assert after[5] != before[5] and after[:5] == before[:5] and after[6:] == before[6:]
