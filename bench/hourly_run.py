"""P8: what a user pays per hour. One `tally_hourly` run for a 100k-event hour, in-process vs Connect.

Each run is a real ``airflow dags test tally_hourly`` (SQLite metadata under the work folder) of
its own hour, so every run computes and publishes fresh input:

- **In-process** (the default): the aggregate task starts a JVM and a SparkSession, as every
  hourly run on an Airflow worker does.
- **Connect** (``SPARK_REMOTE``): a Spark Connect server started as ``make up SPARK=connect``
  starts it (:func:`tally.app.local.start_connect`), warmed by one untimed run, as a server that
  has been up since yesterday is.

Reported per mode, median of ``RUNS``:

- **wall**: from the first task's start to the publish task's end, as Airflow records them in
  its metadata DB (``task_instance.start_date``/``end_date``); target for Connect ≤ 10 s.
- **freshness lag**: from the hour's last file landing (its modification time is set right
  before the run is triggered, as a sink closing the hour's last file) to the publish task's end.
  A scheduled run starts at the top of the next hour (the cron timetable); its sensor
  (``wait_for_input``) passes on its first poke once the hour's folder exists, so with the
  default settings the lag is the scheduler's start delay plus this. Target ≤ 3 min.

``python -m bench.suite P8``, or ``python -m bench.hourly_run`` for this figure alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.server import write_results
from tally.app.generate import generate_hours
from tally.app.local import CONNECT, airflow_env, start_connect
from tally.app.local_config import local_stack
from tally.app.processes import stop, venv_bin
from tally.core.layout import format_hour, raw_parquet_files

EVENTS = 100_000
RUNS = 3
FIRST_HOUR = datetime(2026, 9, 1, tzinfo=UTC)
MODES = ("in-process", "connect")
TARGET_WALL_SECONDS = 10.0
TARGET_LAG_SECONDS = 180.0


def measure(work: Path, redis_url: str, prefix: str) -> dict[str, Any]:
    """Run both modes; every timed hour is new input. The Connect server is stopped afterwards."""
    data_dir = work / "data"
    # One warm-up hour for Connect, then RUNS timed hours per mode.
    hours = [FIRST_HOUR + timedelta(hours=i) for i in range(1 + RUNS * len(MODES))]
    generate_hours(data_dir, hours, EVENTS, seed=8)
    env = airflow_env(work / "airflow", base={**os.environ, "TALLY_DATA_DIR": str(data_dir)})
    env.update({"REDIS_URL": redis_url, "TALLY_REDIS_PREFIX": prefix, "SPARK_MASTER": "local[2]"})
    env.pop("SPARK_REMOTE", None)
    _airflow(env, "db", "migrate")
    stack = local_stack({"TALLY_LOCAL_STATE": str(work / "stack"), "TALLY_CONNECT_PORT": str(_free_port())})
    results: dict[str, Any] = {"events": EVENTS, "runs": {}}
    timed = iter(hours[1:])
    results["runs"]["in-process"] = [_run(env, data_dir, next(timed)) for _ in range(RUNS)]
    try:
        started = time.perf_counter()
        remote = {**env, "SPARK_REMOTE": start_connect(stack, "local[2]")}
        results["connect_server_start_seconds"] = round(time.perf_counter() - started, 1)
        results["connect_warmup"] = _run(remote, data_dir, hours[0])
        results["runs"]["connect"] = [_run(remote, data_dir, next(timed)) for _ in range(RUNS)]
    finally:
        stop(stack.run, CONNECT)
    for mode in MODES:
        runs = results["runs"][mode]
        results[mode] = {
            "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
            "lag_seconds": statistics.median(r["lag_seconds"] for r in runs),
            "aggregate_seconds": statistics.median(r["tasks"]["aggregate"] for r in runs),
            "first_task_seconds": statistics.median(r["tasks"][r["first_task"]] for r in runs),
        }
    return results


def _run(env: dict[str, str], data_dir: Path, hour: datetime) -> dict[str, Any]:
    """One ``dags test`` of ``hour``'s run; its Airflow-recorded wall time and freshness lag."""
    files = raw_parquet_files(data_dir, hour)
    landed = time.time()
    os.utime(files[-1], (landed, landed))  # the hour's last file lands now
    logical = (hour + timedelta(hours=1)).isoformat()
    output = _airflow(env, "dags", "test", "tally_hourly", logical)
    if "state=success" not in output:
        raise RuntimeError(f"tally_hourly for {format_hour(hour)} failed:\n{output[-3000:]}")
    tasks = _task_times(Path(env["AIRFLOW_HOME"]) / "airflow.db", hour)
    first_task = min(tasks, key=lambda task: tasks[task][0])
    first_start = tasks[first_task][0]
    publish_end = tasks["publish"][1]
    return {
        "hour": format_hour(hour),
        # The first task of a `dags test` process also waits for Airflow's in-process Execution API
        # to build its versioned routes on its first request (docs/performance.md, "The hour's cost").
        "first_task": first_task,
        "wall_seconds": round(publish_end - first_start, 2),
        "lag_seconds": round(publish_end - landed, 2),
        "tasks": {task: round(end - start, 2) for task, (start, end) in tasks.items()},
    }


def _task_times(database: Path, hour: datetime) -> dict[str, tuple[float, float]]:
    """Each task's (start, end) epoch seconds of the run whose data interval starts at ``hour``."""
    query = """
        SELECT ti.task_id, ti.start_date, ti.end_date FROM task_instance ti
        JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id
        WHERE dr.dag_id = 'tally_hourly' AND dr.data_interval_start LIKE ?
    """
    with sqlite3.connect(database) as connection:
        rows = connection.execute(query, (hour.strftime("%Y-%m-%d %H:%M:%S") + "%",)).fetchall()
    if not rows:
        raise RuntimeError(f"Airflow recorded no task of the run for {format_hour(hour)}")
    return {task: (_epoch(start), _epoch(end)) for task, start, end in rows}


def _epoch(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([venv_bin("airflow"), *args], env=env, capture_output=True, text=True, timeout=900)
    return result.stdout + result.stderr


def p8_hourly_run(b: Any) -> Any:
    """P8: a tally_hourly run through a warm Connect server vs in-process (wall ≤ 10 s, lag ≤ 3 min)."""
    from bench.suite import WORK, Figure, at_most

    work = WORK / "p8"
    shutil.rmtree(work, ignore_errors=True)
    prefix = f"{b.layout.prefix}-p8"
    try:
        results = measure(work, b.redis_url, prefix)
    finally:
        keys = list(b.client.scan_iter(match=f"{prefix}:*", count=5000))
        if keys:
            b.client.delete(*keys)
        shutil.rmtree(work, ignore_errors=True)
    write_results("hourly_run", results)
    local, remote = results["in-process"], results["connect"]
    ratio = remote["wall_seconds"] / local["wall_seconds"]
    wall_met = remote["wall_seconds"] <= TARGET_WALL_SECONDS
    lag_met = remote["lag_seconds"] <= TARGET_LAG_SECONDS and local["lag_seconds"] <= TARGET_LAG_SECONDS
    _, headroom = at_most(remote["wall_seconds"], TARGET_WALL_SECONDS)
    return Figure(
        "P8",
        f"one tally_hourly run (airflow dags test) for a {EVENTS // 1000}k-event hour: first task start to "
        "publish end as Airflow records it, and the lag from the hour's last file landing to its publish",
        f"Connect: {remote['wall_seconds']:.1f} s (aggregate {remote['aggregate_seconds']:.1f} s, "
        f"first task {remote['first_task_seconds']:.1f} s), "
        f"lag {remote['lag_seconds']:.1f} s",
        f"in-process: {local['wall_seconds']:.1f} s (aggregate {local['aggregate_seconds']:.1f} s), "
        f"lag {local['lag_seconds']:.1f} s",
        round(ratio, 2),
        f"Connect wall ≤ {TARGET_WALL_SECONDS:.0f} s; lag ≤ {TARGET_LAG_SECONDS / 60:.0f} min",
        wall_met and lag_met,
        headroom,
        results,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    from dataclasses import dataclass

    from bench.server import bench_redis
    from cache.keys import KeyLayout

    @dataclass
    class _Bench:
        redis_url: str
        client: Any
        layout: KeyLayout

    with bench_redis("p8") as (url, client, layout):
        figure = p8_hourly_run(_Bench(url, client, layout))
    print(json.dumps(figure.detail, indent=2))
    print(figure.tally, "|", figure.peer)
    sys.exit(0)
