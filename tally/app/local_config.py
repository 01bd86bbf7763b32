"""Where this checkout's local stack lives: its state folder, Airflow home and ports.

These are deliberately not Tally settings (tally.core.settings): they place the development
stack that ``make demo`` and ``make up`` run from this checkout, and only that stack reads
them; the jobs, the API and the DAGs never do. They stay environment variables so a second
stack (the test of ``make up``) can run beside yours on other folders and ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LocalStack:
    """Folders and ports of one local stack."""

    state: Path  # TALLY_LOCAL_STATE: pid files, logs and the Redis the stack starts
    airflow_home: Path  # TALLY_AIRFLOW_HOME
    airflow_port: int  # TALLY_AIRFLOW_PORT: Airflow's UI and API server
    api_port: int  # TALLY_API_PORT: the Tally API
    spark: str = "embedded"  # TALLY_LOCAL_SPARK (`make up SPARK=connect`): embedded, or a local Connect server
    connect_port: int = 15002  # TALLY_CONNECT_PORT: that server's gRPC port (Spark Connect's usual one)

    @property
    def run(self) -> Path:
        """Process ids of what the stack started, so ``down`` can stop it."""
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"


def local_stack(environ: Mapping[str, str] | None = None) -> LocalStack:
    """The stack described by ``environ`` (default: this process's environment); defaults under this checkout."""
    env = os.environ if environ is None else environ
    return LocalStack(
        state=Path(env.get("TALLY_LOCAL_STATE", ROOT / ".tally")),
        airflow_home=Path(env.get("TALLY_AIRFLOW_HOME", ROOT / ".airflow")),
        airflow_port=int(env.get("TALLY_AIRFLOW_PORT", "8080")),
        api_port=int(env.get("TALLY_API_PORT", "8000")),
        spark=env.get("TALLY_LOCAL_SPARK", "embedded"),
        connect_port=int(env.get("TALLY_CONNECT_PORT", "15002")),
    )
