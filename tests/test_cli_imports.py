"""The ``tally`` commands load only the layers they use (the handlers import Spark, Redis or FastAPI inside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs `tally serve` in a fresh interpreter with uvicorn's server replaced by a recorder, so the
# command's real import path is taken but nothing binds a port; prints the heavy modules it loaded.
SERVE = """
import json, sys
import uvicorn
calls = []
uvicorn.run = lambda app, **options: calls.append(options)
from tally.app.cli import main
code = main(["serve", "--port", "8123"])
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"pyspark", "airflow", "jobs", "fastapi"})
print(json.dumps({"code": code, "calls": calls, "heavy": heavy}))
"""

HELP = """
import sys
from tally.app.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted({name.split(".")[0] for name in sys.modules} & {"pyspark", "airflow", "jobs", "fastapi", "uvicorn"}))
"""


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_serve_starts_without_spark_or_airflow():
    out = json.loads(run_python(SERVE))
    assert out["code"] == 0
    assert [call["port"] for call in out["calls"]] == [8123]
    assert out["heavy"] == ["fastapi"]  # the API itself, and nothing of the jobs or the DAGs


def test_help_loads_no_heavy_layer():
    assert run_python(HELP) == "[]"
