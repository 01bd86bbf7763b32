"""The installed environment: pyspark's Python files match its jars; Java is checked."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pyspark
import pytest

ROOT = Path(__file__).resolve().parents[1]


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
