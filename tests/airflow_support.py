"""Running real Airflow commands against this checkout's DAGs, in a throwaway AIRFLOW_HOME."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tally.local import airflow_env

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def run_airflow(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)


def prepared_env(airflow_home: Path, **tally_env: str) -> dict[str, str]:
    """An environment with a migrated SQLite metadata DB under ``airflow_home``."""
    import os

    base = {**os.environ, **tally_env}
    env = airflow_env(airflow_home, base=base)
    result = run_airflow(env, "db", "migrate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return env
