"""Each role installs what it needs: `tally serve` runs from an environment holding only `tally[api]`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"

pytestmark = pytest.mark.slow  # builds a virtual environment (~20 s from uv's cache)


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with Tally and exactly the locked requirements of the `api` extra."""
    if not UV.exists():
        pytest.skip(f"needs {UV} (any make target installs it)")
    root = tmp_path_factory.mktemp("api-only")
    requirements = root / "requirements.txt"
    subprocess.run(
        [str(UV), "export", "--frozen", "--extra", "api", "--no-default-groups", "--no-emit-project", "--quiet",
         "--no-hashes", "-o", str(requirements)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    venv = root / "venv"
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    for args in (["-r", str(requirements)], ["--no-deps", str(ROOT)]):
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", str(python), *args],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    return venv


def installed(venv: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([str(venv / "bin" / "python"), "-c", probe]).returncode == 0


def test_the_api_extra_holds_no_spark_and_no_airflow(api_only: Path):
    assert installed(api_only, "fastapi") and installed(api_only, "redis") and installed(api_only, "datasketches")
    assert not installed(api_only, "pyspark")
    assert not installed(api_only, "airflow")


def test_tally_serve_answers_from_the_api_extra_alone(api_only: Path, tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "PATH": f"{api_only / 'bin'}:/usr/bin:/bin",
        "REDIS_URL": os.environ["REDIS_URL"],  # the test Redis and prefix (tests/conftest.py)
        "TALLY_REDIS_PREFIX": os.environ["TALLY_REDIS_PREFIX"],
        "TALLY_API_HOST": "127.0.0.1",
        "HOME": str(tmp_path),
    }
    server = subprocess.Popen(
        [str(api_only / "bin" / "tally"), "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=5) as response:
                    body = response.read().decode()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"tally serve did not answer (exit {server.poll()}):\n{output}")
                time.sleep(0.3)
        assert '"metrics"' in body and "orders" in body  # the default spec, served without Spark or Airflow
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
