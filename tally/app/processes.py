"""The local stack's processes: starting them in the background, running logged steps, stopping them.

A background process gets its own session, and its pid is written to ``<run>/<name>.pid``, so
``stop`` can end the whole process group (``airflow standalone`` ignores SIGTERM sent to its
main pid alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tally.app.local_config import ROOT


def venv_bin(name: str) -> str:
    """A console script installed beside this Python (``tally``, ``airflow``)."""
    return str(Path(sys.executable).with_name(name))


def start_background(run: Path, logs: Path, name: str, argv: list[str], env: dict[str, str]) -> int:
    run.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    (run / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def run_logged(logs: Path, name: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a step with its (verbose) output in ``logs``; show the tail if it fails."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "wb") as log:
        result = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    text = log_path.read_text(errors="replace")
    failed = result.returncode != 0 or "state=failed" in text or "DagRun failed" in text
    if failed:
        print("".join(text.splitlines(keepends=True)[-40:]), file=sys.stderr)
        raise RuntimeError(f"{name} failed; full log: {log_path}")
    print(f"  ok (log: {log_path})")


def wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, seconds: float, pid: int) -> bool:
    """Wait until something listens on ``port``; False at the deadline or once process ``pid`` has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return False
        time.sleep(0.5)
    return False


def stop(run: Path, name: str) -> None:
    """Stop the process group recorded in ``<run>/<name>.pid`` (TERM, then KILL), if any."""
    pid_file = run / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        for _ in range(50):
            if _group_gone(pid):
                break
            time.sleep(0.2)
        else:
            continue
        break
    pid_file.unlink(missing_ok=True)
    print(f"stopped {name}")


def _group_gone(pid: int) -> bool:
    # A child of this process (the demo's Redis) lingers as a zombie until reaped,
    # and a zombie still counts as a member of its group.
    with contextlib.suppress(ChildProcessError):  # not our child: `make down` stopping what `up` started
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False
