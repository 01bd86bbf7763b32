"""Running real Airflow commands against this checkout's DAGs, in a throwaway AIRFLOW_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tally.app.local import airflow_env

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ROOT = Path(__file__).resolve().parents[2]


def run_airflow(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)


def prepared_env(airflow_home: Path, **tally_env: str) -> dict[str, str]:
    """An environment with a migrated SQLite metadata DB under ``airflow_home``."""
    base = {**os.environ, **tally_env}
    env = airflow_env(airflow_home, base=base)
    result = run_airflow(env, "db", "migrate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return env


@contextmanager
def local_stack(tmp_path: Path, redis_server: str, redis_client: Any, prefix: str, **extra: str) -> Iterator[dict]:
    """`python -m tally.app.local up` (what `make up` runs) in ``tmp_path``, on free ports and a private
    Redis prefix; yields the environment and its `up` output. `down` and deleting the prefix's keys
    run afterwards whatever happens, and both ports must be closed then."""
    import httpx
    import pytest

    from cache.keys import KeyLayout
    from tests.conftest import delete_prefix
    from tests.support.net import free_port

    env = {
        **os.environ,
        "TALLY_LOCAL_STATE": str(tmp_path / "state"),
        "TALLY_AIRFLOW_HOME": str(tmp_path / "airflow"),
        "TALLY_AIRFLOW_PORT": str(free_port()),
        "TALLY_API_PORT": str(free_port()),
        "TALLY_DATA_DIR": str(tmp_path / "data"),
        "TALLY_REDIS_PREFIX": prefix,
        "REDIS_URL": redis_server,
        "SPARK_MASTER": "local[2]",
        # The scheduler only queues runs of DAGs it has parsed; parse quickly.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        **extra,
    }
    local = [sys.executable, "-m", "tally.app.local"]
    up = subprocess.run([*local, "up"], env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield env, up.stdout
    finally:
        down = subprocess.run([*local, "down"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
        delete_prefix(redis_client, KeyLayout(prefix))
        assert down.returncode == 0, down.stderr
        for port in (env["TALLY_AIRFLOW_PORT"], env["TALLY_API_PORT"]):
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        if env.get("TALLY_LOCAL_SPARK") == "connect":  # `make up SPARK=connect`: down stops the server too
            from tally.app.processes import port_open

            assert not port_open(int(env["TALLY_CONNECT_PORT"]))
