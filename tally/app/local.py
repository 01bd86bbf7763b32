"""The local stack behind ``make demo``, ``make up`` and ``make down``.

Runs everything from this checkout: Airflow with its SQLite metadata DB under
``.airflow/`` (or, with TALLY_AIRFLOW_DATABASE_URL, in PostgreSQL with the
LocalExecutor: ``make up AIRFLOW_DB=postgres``), a Redis when none answers at
``REDIS_URL`` (files under ``.tally/redis``), and the API. Process ids live in
``.tally/run`` so ``down`` can stop each process group (``airflow standalone``
ignores SIGTERM sent to its main pid alone).

Usage: ``python -m tally.app.local {demo|up|down|airflow} [args...]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where the local stack keeps its state and which ports it uses; overridable so a
# second stack (e.g. the test of `make up`) can run beside yours.
STATE = Path(os.environ.get("TALLY_LOCAL_STATE", ROOT / ".tally"))
RUN = STATE / "run"
LOGS = STATE / "logs"
AIRFLOW_HOME = Path(os.environ.get("TALLY_AIRFLOW_HOME", ROOT / ".airflow"))
AIRFLOW_PORT = int(os.environ.get("TALLY_AIRFLOW_PORT", "8080"))
API_PORT = int(os.environ.get("TALLY_API_PORT", "8000"))


def airflow_env(
    airflow_home: Path | None = None, base: dict[str, str] | None = None, database_url: str | None = None
) -> dict[str, str]:
    """Environment for Airflow commands run against this checkout's DAGs.

    With ``database_url`` (PostgreSQL) Airflow keeps its metadata there and runs
    tasks with the LocalExecutor; without it, in SQLite under the Airflow home.
    """
    env = dict(os.environ if base is None else base)
    home = airflow_home or AIRFLOW_HOME
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
            # Task workers reach the API server here; its default assumes port 8080.
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{AIRFLOW_PORT}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            # The DAGs leave the first retry's delay to Airflow's configuration (doubling after).
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": env.get("AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", "60"),
            # Tasks run from Airflow's working directory: make the data path absolute.
            "TALLY_DATA_DIR": str(Path(env.get("TALLY_DATA_DIR", ROOT / "data")).resolve()),
            "PYTHONUNBUFFERED": "1",
            # `airflow standalone` starts its components as `airflow` from PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if database_url:
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # The LocalExecutor forks this many workers at once; Spark tasks want a core each.
                "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
            }
        )
    return env


def prepare_airflow_database() -> str | None:
    """The PostgreSQL URL configured for Airflow's metadata, its database created if missing; None: SQLite.

    Runs before anything is started, so an unreachable server stops `up` with nothing left running.
    """
    import sqlalchemy as sa

    from tally.app.services import ensure_postgres_database
    from tally.core.settings import get_settings

    url = get_settings().airflow_database_url
    if url:
        created = ensure_postgres_database(url)
        shown = sa.make_url(url).render_as_string(hide_password=True)
        print(f"Airflow's metadata: {shown}{' (created)' if created else ''}, LocalExecutor")
    return url


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def airflow(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([_bin("airflow"), *args], env=env or airflow_env(), check=check)


def _start_background(name: str, argv: list[str], env: dict[str, str]) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    (RUN / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _logged(name: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a step with its (verbose) output in .tally/logs; show the tail if it fails."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{name}.log"
    with open(log_path, "wb") as log:
        result = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    text = log_path.read_text(errors="replace")
    failed = result.returncode != 0 or "state=failed" in text or "DagRun failed" in text
    if failed:
        print("".join(text.splitlines(keepends=True)[-40:]), file=sys.stderr)
        raise RuntimeError(f"{name} failed; full log: {log_path}")
    print(f"  ok (log: {log_path})")


def _wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


def _stop(name: str) -> None:
    pid_file = RUN / f"{name}.pid"
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


def ensure_redis() -> bool:
    """Start a local Redis when nothing answers at REDIS_URL; True if we started one.

    A Redis the stack starts gets Tally's two ACL users (cache.acl): the jobs write
    as the writer, and the API reads as the read-only user. A Redis it finds
    running is used as configured (`tally redis-acl` prints the users to create).
    """
    import redis

    from cache.acl import create_users
    from tally.app.services import start_local_redis
    from tally.core.settings import get_settings

    settings = get_settings()
    users_file = STATE / "redis" / "users.json"
    process = start_local_redis(settings.redis_url, STATE / "redis")
    if process is None:
        if (RUN / "redis.pid").exists() and users_file.exists():  # ours, left running by an earlier `up`
            _use_redis_users(json.loads(users_file.read_text()))
        return False
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "redis.pid").write_text(str(process.pid))
    admin = redis.Redis.from_url(settings.redis_url)
    try:
        urls = create_users(admin, settings.redis_prefix, settings.redis_url)
    finally:
        admin.close()
    users_file.touch(mode=0o600)  # passwords: readable by this user only
    users_file.chmod(0o600)
    users_file.write_text(json.dumps(urls))
    _use_redis_users(urls)
    print(f"started a local Redis (pid {process.pid}) for {settings.redis_url}, with Tally's writer and API users")
    return True


def _use_redis_users(urls: dict[str, str]) -> None:
    """Make this process and the ones it starts use the ACL users' URLs."""
    from tally.core.settings import get_settings

    os.environ.update(urls)
    get_settings.cache_clear()


DEMO_DAYS = 14
# Modest on purpose: `make demo` should take a few minutes on a laptop, start-up included.
DEMO_EVENTS_PER_HOUR = 2000


def demo_range(now: datetime, days: int = DEMO_DAYS) -> tuple[datetime, datetime]:
    """The hours the demo generates: ``days`` days ending at the last full UTC hour before ``now``."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


def demo_examples(base: str, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """Example queries (what each shows, URL) that return numbers for demo data covering [start, end).

    Day buckets stop at the last UTC midnight, so none of them is a partial day.
    """
    last_midnight = end.replace(hour=0)
    week = last_midnight - timedelta(days=7)
    hourly = f"start={end - timedelta(hours=24):%Y-%m-%dT%H:%MZ}&end={end:%Y-%m-%dT%H:%MZ}"
    daily = f"start={week:%Y-%m-%d}&end={last_midnight:%Y-%m-%d}"
    metrics = f"{base}/v1/metrics"
    examples = [
        ("events per hour, the last 24 hours", f"{metrics}/events?grain=hour&{hourly}"),
        ("revenue per day by platform, the last 7 days", f"{metrics}/revenue?grain=day&{daily}&group_by=platform"),
    ]
    # A 7-day window reaches 6 days before the first bucket: offered only when the data goes back that far.
    if week - timedelta(days=6) >= start:
        rolling = f"{metrics}/active_users?grain=day&window=7d&{daily}"
        examples.append(("7-day rolling active users, the last 7 days", rolling))
    return examples


def demo_banner(base: str, start: datetime, end: datetime) -> str:
    """What the demo prints once the API is about to serve: where to look first, then examples to paste."""
    examples = "".join(f"  # {what}\n  curl '{url}'\n" for what, url in demo_examples(base, start, end))
    return (
        f"\nTally is serving the numbers it just computed, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC:\n"
        f"  dashboard:  {base}/\n  API docs:   {base}/docs\n  metrics:    {base}/v1/metrics\n"
        f"  health:     {base}/health\n"
        f"Try:\n{examples}"
        "Press Ctrl-C to stop.\n"
    )


def demo() -> int:
    """Sample data -> Airflow runs -> API in the foreground; Ctrl-C stops it all."""
    from tally.core.settings import get_settings

    airflow_database = prepare_airflow_database()
    started_redis = ensure_redis()
    try:
        env = airflow_env(database_url=airflow_database)
        data_dir = Path(env["TALLY_DATA_DIR"])
        start, end = demo_range(datetime.now(UTC))
        print(f"generating {DEMO_DAYS} days of sample events, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ...")
        subprocess.run(
            [
                _bin("tally"),
                "generate",
                "--start",
                f"{start:%Y-%m-%dT%H:%MZ}",
                "--end",
                f"{end:%Y-%m-%dT%H:%MZ}",
                "--events-per-hour",
                str(DEMO_EVENTS_PER_HOUR),
                "--data-dir",
                str(data_dir),
            ],
            check=True,
        )
        print("preparing Airflow's metadata DB ...")
        _logged("airflow-db-migrate", [_bin("airflow"), "db", "migrate"], env)
        last = end - timedelta(hours=1)
        conf = json.dumps({"start": start.isoformat(), "end": last.isoformat()})
        print(f"recomputing {start:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC through Airflow (tally_recompute) ...")
        _logged("demo-tally_recompute", [_bin("airflow"), "dags", "test", "tally_recompute", "--conf", conf], env)
        # A manual tally_hourly run processes the hour that ended at its logical date.
        print(f"running tally_hourly for {last:%Y-%m-%d %H}:00 UTC through Airflow ...")
        _logged("demo-tally_hourly", [_bin("airflow"), "dags", "test", "tally_hourly", end.isoformat()], env)
        print(demo_banner(f"http://127.0.0.1:{API_PORT}", start, end))
        from dashboard_api.server import serve

        # uvicorn re-raises the signal that stopped it; for SIGTERM that would end the
        # process before `finally` could stop the Redis this demo started.
        signal.signal(signal.SIGTERM, _interrupt)
        serve(host="127.0.0.1", port=API_PORT, settings=get_settings())
    except KeyboardInterrupt:
        pass
    finally:
        if started_redis:
            _stop("redis")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up() -> int:
    """Airflow (UI + REST API on :8080), Redis if needed, and the API (:8000), in the background."""
    airflow_database = prepare_airflow_database()
    ensure_redis()
    env = airflow_env(database_url=airflow_database)
    print("preparing Airflow's metadata DB ...")
    _logged("airflow-db-migrate", [_bin("airflow"), "db", "migrate"], env)
    _start_background("airflow", [_bin("airflow"), "standalone"], env)
    _start_background("api", [_bin("tally"), "serve", "--port", str(API_PORT)], env)
    print(f"waiting for Airflow on http://127.0.0.1:{AIRFLOW_PORT} ...")
    airflow_ok = _wait_http(f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/monitor/health", 180)
    api_ok = _wait_http(f"http://127.0.0.1:{API_PORT}/health", 60)
    password_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text()).get("admin") if password_file.exists() else None
    password_text = password or f"see {password_file}"
    airflow_note = "" if airflow_ok else f"  [not answering yet: see {LOGS / 'airflow.log'}]"
    api_note = "" if api_ok else f"  [not answering: see {LOGS / 'api.log'}]"
    print(
        f"\nAirflow UI:  http://127.0.0.1:{AIRFLOW_PORT}  (user admin, password {password_text}){airflow_note}\n"
        f"Tally API:   http://127.0.0.1:{API_PORT}/docs{api_note}\n"
        "Unpause and trigger tally_hourly, or trigger tally_recompute with a range. `make down` stops everything."
    )
    return 0 if airflow_ok and api_ok else 1


def down() -> int:
    for name in ("api", "airflow", "redis"):
        _stop(name)
    return 0


def main(argv: list[str]) -> int:
    from tally.app.services import PostgresUnavailableError
    from tally.core.settings import get_settings

    commands = {"demo": demo, "up": up, "down": down}
    if argv and argv[0] == "airflow":
        env = airflow_env(database_url=get_settings().airflow_database_url)
        return airflow(*argv[1:], env=env, check=False).returncode
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m tally.app.local {{{'|'.join(commands)}|airflow ...}}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]]()
    except PostgresUnavailableError as exc:
        print(f"{exc}\nStart PostgreSQL, or unset TALLY_AIRFLOW_DATABASE_URL to use SQLite.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
