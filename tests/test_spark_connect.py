"""The job through a warm Spark Connect server (``SPARK_REMOTE=sc://...``): the CLI, a backfill and
the hourly DAG give the rollups, statistics and quarantine of an in-process run, and the client runs
no JVM of its own.

The server is started the way ``make up SPARK=connect`` starts it (:func:`tally.app.local.start_connect`)
on a free port. Every client here runs with ``JAVA_HOME`` pointing nowhere: an in-process session could
not start a JVM (checked by the same command without ``SPARK_REMOTE``, which must fail), so a success
proves the work ran on the server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cache.keys import KeyLayout
from jobs.hourly import run_hours
from tally.app.generate import generate_hours
from tally.app.local import CONNECT, start_connect
from tally.app.local_config import local_stack
from tally.app.processes import port_open, stop
from tally.core.layout import QUARANTINE, ROLLUPS_HOURLY
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.airflow import prepared_env, run_airflow
from tests.support.cli import run_tally, tally_env
from tests.support.compare import SLICE_COLUMNS, assert_same_rollups, read_stats, read_table
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
HOURS = [T0 + timedelta(hours=i) for i in range(4)]
ROOT = Path(__file__).resolve().parents[1]
NO_JVM = {"JAVA_HOME": "/nonexistent-java-home"}  # spark-class runs $JAVA_HOME/bin/java
QUARANTINE_ORDER = ["dt", "hour", "event_id", "event_time", "user_id"]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("spark-connect")
    stack = local_stack({"TALLY_LOCAL_STATE": str(state), "TALLY_CONNECT_PORT": str(free_port())})
    url = start_connect(stack, "local[2]")
    try:
        yield url
    finally:
        stop(stack.run, CONNECT)
        assert not port_open(stack.connect_port)


def assert_same_tables(remote_dir: Path, local_dir: Path) -> None:
    remote_rollups = read_table(remote_dir / ROLLUPS_HOURLY, SLICE_COLUMNS)
    assert len(remote_rollups) > 100
    assert_same_rollups(remote_rollups, read_table(local_dir / ROLLUPS_HOURLY, SLICE_COLUMNS))
    pd.testing.assert_frame_equal(read_stats(remote_dir), read_stats(local_dir), check_exact=True)
    pd.testing.assert_frame_equal(
        read_table(remote_dir / QUARANTINE, QUARANTINE_ORDER), read_table(local_dir / QUARANTINE, QUARANTINE_ORDER)
    )


def test_cli_backfill_and_run_through_connect_equal_in_process(
    tmp_path, connect_url, spark, redis_client, layout, redis_server
):
    remote_dir, local_dir = tmp_path / "remote", tmp_path / "local"
    generate_hours(remote_dir, HOURS, 2_000, seed=23)
    shutil.copytree(remote_dir, local_dir)  # keeps modification times: the fingerprints match too
    env = tally_env(remote_dir, layout, redis_server, **NO_JVM)

    # The control: without SPARK_REMOTE the same command needs a JVM, and there is none.
    in_process = run_tally("run", "--hour", "2026-11-27T12:00Z", env=env)
    assert in_process.returncode != 0
    assert not (remote_dir / ROLLUPS_HOURLY).exists()

    remote = {**env, "SPARK_REMOTE": connect_url}
    backfill = run_tally("backfill", "--start", "2026-11-27T09:00Z", "--end", "2026-11-27T12:00Z", env=remote)
    assert backfill.returncode == 0, backfill.stderr[-4000:]
    assert "computed 3 hour(s)" in backfill.stdout
    run = run_tally("run", "--hour", "2026-11-27T12:00Z", env=remote)
    assert run.returncode == 0, run.stderr[-4000:]
    assert redis_client.hlen(layout.pointer()) == 4

    # A rerun of an unchanged hour is found unchanged through Connect too (fingerprints, no new build).
    builds = redis_client.hgetall(layout.pointer())
    again = run_tally("run", "--hour", "2026-11-27T12:00Z", env=remote)
    assert again.returncode == 0, again.stderr[-4000:]
    assert redis_client.hgetall(layout.pointer()) == builds

    # The same batches in the suite's session: a run's statistics record how many hours it held.
    spec = load_spec(DEFAULT_SPEC_PATH)
    for batch in (HOURS[:3], HOURS[3:]):
        report = run_hours(spark, local_dir, spec, batch)
        assert report.ok and len(report.computed_hours) == len(batch)
    assert_same_tables(remote_dir, local_dir)


def test_check_spec_through_connect_needs_no_jvm(connect_url, tmp_path):
    env = {**NO_JVM, "SPARK_REMOTE": connect_url, "TALLY_DATA_DIR": str(tmp_path)}
    checked = run_tally("check-spec", str(DEFAULT_SPEC_PATH), env=env)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        DEFAULT_SPEC_PATH.read_text().replace("      platform: platform\n", "      platform: no_such_column\n")
    )
    refused = run_tally("check-spec", str(broken), env=env)
    assert refused.returncode != 0
    assert "no_such_column" in refused.stdout + refused.stderr


def test_hourly_dag_through_connect_equals_in_process(
    tmp_path, tmp_path_factory, connect_url, spark, redis_client, redis_server
):
    remote_dir, local_dir = tmp_path / "remote", tmp_path / "local"
    hour = HOURS[0]
    generate_hours(remote_dir, [hour], 2_000, seed=29)
    shutil.copytree(remote_dir, local_dir)
    prefix = f"{TEST_PREFIX}-connect-dag"
    env = prepared_env(
        tmp_path_factory.mktemp("airflow-home"),
        TALLY_DATA_DIR=str(remote_dir),
        TALLY_REDIS_PREFIX=prefix,
        REDIS_URL=redis_server,
        SPARK_REMOTE=connect_url,
        **NO_JVM,
    )
    layout = KeyLayout(prefix)
    try:
        run = run_airflow(env, "dags", "test", "tally_hourly", (hour + timedelta(hours=1)).isoformat())
        output = run.stdout + run.stderr
        assert "DagRun Finished" in output and "state=success" in output, output[-4000:]
        assert redis_client.hlen(layout.pointer()) == 1
    finally:
        delete_prefix(redis_client, layout)
    report = run_hours(spark, local_dir, load_spec(DEFAULT_SPEC_PATH), [hour])
    assert report.ok
    assert_same_tables(remote_dir, local_dir)


PROGRESS_SCRIPT = """
import io, sys
from jobs import progress
from jobs.session import build_session

class Terminal(io.StringIO):
    def isatty(self):
        return True

spark = build_session("local[1]", remote=sys.argv[1])
out = Terminal()
with progress.spark_tasks("computing 3 hour(s)", enabled=True, file=out):
    assert spark.range(0, 10_000, numPartitions=3).selectExpr("id % 7 AS k").groupBy("k").count().count() == 7
    assert spark.range(0, 1000, numPartitions=4).selectExpr("sum(id)").collect()[0][0] == 499500
print(out.getvalue().split("\\r")[-1])
"""


def test_the_backfill_progress_bar_follows_the_tasks_on_the_server(connect_url):
    # A child process: a Connect session switches pyspark's functions to Connect for the whole process.
    shown = subprocess.run(
        [sys.executable, "-c", PROGRESS_SCRIPT, connect_url], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    final = shown.stdout.strip().splitlines()[-1]
    assert final.startswith("computing 3 hour(s): 100%"), final
    done, total = (int(n) for n in final.split("|")[-1].split()[0].split("/"))
    assert done == total >= 3, final
