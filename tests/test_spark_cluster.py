"""The same job runs unchanged on a real Spark cluster: a standalone master and worker on 127.0.0.1.

The daemons are started with the pyspark package's own ``sbin/spark-daemon.sh``
(the pip package has no ``start-master.sh``), with their logs, pid files, work
and scratch folders in a temporary folder and a unique ident string, so parallel
runs do not collide. ``tally backfill`` then runs as an operator would run it,
with ``SPARK_MASTER=spark://...``, and its rollups, run statistics and quarantine
are compared with those of a local run (the suite's session) over a copy of the same input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyspark
import pytest

from cache.keys import KeyLayout
from jobs.hourly import run_hours
from tally.app.generate import generate_hours
from tally.core.layout import QUARANTINE, ROLLUPS_HOURLY
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.support.cli import run_tally
from tests.support.compare import SLICE_COLUMNS, assert_same_rollups, read_stats, read_table
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_DAEMON = SPARK_HOME / "sbin" / "spark-daemon.sh"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
HOURS = [T0 + timedelta(hours=i) for i in range(3)]
RANGE = ("--start", "2026-11-27T09:00Z", "--end", "2026-11-27T12:00Z")

# Cluster-side defaults an operator keeps in $SPARK_CONF_DIR/spark-defaults.conf; the job
# and the CLI are unchanged. Spark's 200 shuffle partitions on one core cost about 90 s for
# these few thousand rows; 3 (local runs use 4) also shows the result does not depend on it.
SPARK_DEFAULTS = """\
spark.sql.shuffle.partitions 3
spark.ui.showConsoleProgress false
spark.master.rest.enabled false
"""


@dataclass(frozen=True)
class Cluster:
    master_url: str
    webui_url: str
    work_dir: Path
    env: dict[str, str]  # what the driver (tally) needs to use the cluster's configuration

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as response:
            return json.load(response)


def spark_daemon(env: dict[str, str], action: str, daemon_class: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SPARK_DAEMON), action, daemon_class, "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def daemon_logs(log_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(log_dir.glob("*.out")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and one worker (1 core, 1 GiB), stopped afterwards whatever happens."""
    root = tmp_path_factory.mktemp("spark-cluster")
    conf_dir = root / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    client_env = {
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": "127.0.0.1",
        # Executors need Java only: the job starts no Python worker (no UDFs; small driver-side
        # frames travel as Arrow, see jobs.source.local_frame). A Python worker would fail here.
        "PYSPARK_PYTHON": "/bin/false",
    }
    env = {
        **os.environ,
        **client_env,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_PID_DIR": str(root / "pids"),
        "SPARK_IDENT_STRING": f"tally-spark-{uuid.uuid4().hex[:12]}",
        "SPARK_LOCAL_DIRS": str(root / "scratch"),
    }
    master_port, master_ui, worker_ui = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{master_port}"
    work_dir = root / "work"
    webui_url = f"http://127.0.0.1:{master_ui}"
    try:
        master_args = ["--host", "127.0.0.1", "--port", str(master_port), "--webui-port", str(master_ui)]
        master = spark_daemon(env, "start", MASTER_CLASS, *master_args)
        assert master.returncode == 0, master.stdout + master.stderr
        worker = spark_daemon(
            env,
            "start",
            WORKER_CLASS,
            master_url,
            "--host",
            "127.0.0.1",
            "--cores",
            "1",
            "--memory",
            "1g",
            "--webui-port",
            str(worker_ui),
            "--work-dir",
            str(work_dir),
        )
        assert worker.returncode == 0, worker.stdout + worker.stderr
        cluster = Cluster(master_url, webui_url, work_dir, client_env)
        wait_for_worker(cluster, root / "logs")
        yield cluster
    finally:
        # Each stop is attempted even if the other fails; the pid files name our daemons only.
        for daemon_class in (WORKER_CLASS, MASTER_CLASS):
            spark_daemon(env, "stop", daemon_class)


def wait_for_worker(cluster: Cluster, log_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cluster.state().get("aliveworkers", 0) >= 1:
                return
        except (OSError, ValueError):
            pass  # the master's web UI is not up (or not serving JSON) yet
        time.sleep(0.5)
    pytest.fail(f"no worker registered with {cluster.master_url} within {timeout} s\n{daemon_logs(log_dir)}")


def backfill(data_dir: Path, redis_url: str, layout: KeyLayout, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        "TALLY_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "TALLY_REDIS_PREFIX": layout.prefix,
        **env,
    }
    return run_tally("backfill", *RANGE, *args, env=full_env)


def test_backfill_on_a_standalone_cluster_equals_local(tmp_path, cluster, spark, redis_client, layout, redis_server):
    cluster_dir, local_dir = tmp_path / "cluster", tmp_path / "local"
    generate_hours(cluster_dir, HOURS, 2_000, seed=11)
    # copytree keeps modification times, so the input fingerprints must match too.
    shutil.copytree(cluster_dir, local_dir)

    started = time.monotonic()
    on_cluster = backfill(cluster_dir, redis_server, layout, SPARK_MASTER=cluster.master_url, **cluster.env)
    cluster_seconds = time.monotonic() - started
    assert on_cluster.returncode == 0, on_cluster.stderr[-4000:]
    assert "computed 3 hour(s)" in on_cluster.stdout
    assert redis_client.hlen(layout.pointer()) == 3  # published (a fresh prefix is filled from the rollups)

    # The same hours through the same job in the suite's local session (local[2]).
    report = run_hours(spark, local_dir, load_spec(DEFAULT_SPEC_PATH), HOURS)
    assert report.ok and len(report.computed_hours) == len(HOURS)
    print(f"cluster run {cluster_seconds:.1f} s")

    # It ran on the cluster: the master lists the finished application, and the worker
    # launched an executor for it that ran tasks.
    apps = cluster.state()["completedapps"]
    assert [app["name"] for app in apps] == ["tally"], apps
    app_dirs = list(cluster.work_dir.glob("app-*"))
    assert [d.name for d in app_dirs] == [apps[0]["id"]]
    executor_logs = "".join(p.read_text() for p in app_dirs[0].glob("*/stderr"))
    assert "Finished task" in executor_logs
    assert "PythonRunner" not in executor_logs

    cluster_rollups = read_table(cluster_dir / ROLLUPS_HOURLY, SLICE_COLUMNS)
    assert len(cluster_rollups) > 100
    assert_same_rollups(cluster_rollups, read_table(local_dir / ROLLUPS_HOURLY, SLICE_COLUMNS))

    pd.testing.assert_frame_equal(read_stats(cluster_dir), read_stats(local_dir), check_exact=True)

    quarantine_order = ["dt", "hour", "event_id", "event_time", "user_id"]
    pd.testing.assert_frame_equal(
        read_table(cluster_dir / QUARANTINE, quarantine_order), read_table(local_dir / QUARANTINE, quarantine_order)
    )
