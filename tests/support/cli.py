"""Running `tally ...`: the installed console script in a child process, or its ``main`` in this one.

In-process is the cheap way (no interpreter or JVM start-up per call) and what most tests want;
a child process is for what only the real command shows: its exit status and everything it
prints, tracebacks included, or a process a test kills.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cache.keys import KeyLayout

TALLY = str(Path(sys.executable).with_name("tally"))


def tally_env(data_dir: Path, layout: KeyLayout, redis_url: str, **env: str) -> dict[str, str]:
    """The settings a `tally` command reads, pointed at a test's data folder, Redis and key prefix."""
    return {
        "TALLY_DATA_DIR": str(data_dir),
        "TALLY_REDIS_PREFIX": layout.prefix,
        "REDIS_URL": redis_url,
        "SPARK_MASTER": "local[1]",
        **env,
    }


def run_tally(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`tally ARGS` in a child process whose environment is this one's updated with ``env``."""
    return subprocess.run([TALLY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def tally(
    data_dir: Path, layout: KeyLayout, redis_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`tally ARGS` in a child process against a test's data folder, Redis and prefix (see :func:`tally_env`)."""
    return run_tally(*args, env=tally_env(data_dir, layout, redis_url, **env))


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def tally_in_process(
    argv: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> CliResult:
    """`tally ARGV` through ``tally.app.cli.main`` with ``env`` set for this call only; what it printed.

    The settings are read afresh from that environment, and forgotten afterwards.
    """
    from tally.app.cli import main
    from tally.core.settings import get_settings

    capsys.readouterr()  # what the test printed before is not the command's
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            code = main(list(argv))
        finally:
            get_settings.cache_clear()
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
