"""DAG integrity: every DAG file imports cleanly and declares what operators need."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tally.app.local import airflow_env

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process so Airflow's configuration (AIRFLOW_HOME) never leaks into other tests.
INSPECT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md and dag.doc_md.strip()),
        "owners": sorted({t.owner for t in dag.tasks}),
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "max_active_runs": dag.max_active_runs,
        "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup,
        "params": sorted(dag.params.keys()),
        "defaults": {name: dag.params[name] for name in dag.params.keys()},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = airflow_env(tmp_path_factory.mktemp("airflow-home"))
    result = subprocess.run(
        [sys.executable, "-c", INSPECT, str(ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == {"tally_hourly", "tally_recompute", "tally_reconcile", "tally_daily_report"}


@pytest.mark.parametrize("dag_id", ["tally_hourly", "tally_recompute", "tally_reconcile", "tally_daily_report"])
def test_every_dag_has_docs_tags_owner_and_retries(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert dag["doc_md"] and "tally" in dag["tags"]
    assert dag["owners"] == ["tally"]
    # A check task only reports what an earlier task found: retrying it cannot change its answer.
    retried = {task: retries for task, retries in dag["retries"].items() if not task.startswith("check_")}
    assert all(retries >= 1 for retries in retried.values()), dag["retries"]
    assert dag["max_active_runs"] <= 3


def test_hourly_dag_has_real_data_intervals(dagbag):
    hourly = dagbag["dags"]["tally_hourly"]
    assert hourly["timetable"] == "CronDataIntervalTimetable"
    assert hourly["catchup"] is False
    assert set(hourly["retries"]) == {"find_stale", "wait_for_input", "aggregate", "publish", "check_late_input"}


def test_recompute_dag_takes_a_range(dagbag):
    assert dagbag["dags"]["tally_recompute"]["params"] == ["end", "start"]


def test_recompute_form_opens_on_the_last_full_utc_day(dagbag):
    defaults = dagbag["dags"]["tally_recompute"]["defaults"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # The parse may straddle midnight: either of the last two full days.
    ends = {midnight, midnight - timedelta(days=1)}
    start, end = datetime.fromisoformat(defaults["start"]), datetime.fromisoformat(defaults["end"])
    assert end in ends and end - start == timedelta(days=1), defaults


def test_dag_files_import_only_airflow_and_pendulum_at_top_level():
    import ast

    for path in (ROOT / "dags").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert module.split(".")[0] in {"__future__", "airflow", "pendulum", "datetime"}, (path.name, module)
