"""The local stack behind ``make demo``, ``make up`` and ``make down``.

Runs everything from this checkout: Airflow with its SQLite metadata DB under
``.airflow/`` (or, with TALLY_AIRFLOW_DATABASE_URL, in PostgreSQL with the
LocalExecutor: ``make up AIRFLOW_DB=postgres``), a Redis when none answers at
``REDIS_URL`` (files under ``.tally/redis``), and the API. Process ids live in
``.tally/run`` so ``down`` can stop each process group (tally.app.processes).
Folders and ports: tally.app.local_config; the demo's steps: tally.app.demo.

Usage: ``python -m tally.app.local {demo|up|down|airflow} [args...]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tally.app.local_config import ROOT, LocalStack, local_stack
from tally.app.processes import port_open, run_logged, start_background, stop, venv_bin, wait_http, wait_port

CONNECT = "spark-connect"  # the Connect server's name in the stack's pid and log files
SPARK_MODES = ("embedded", "connect")


def airflow_env(
    airflow_home: Path | None = None,
    base: dict[str, str] | None = None,
    database_url: str | None = None,
    stack: LocalStack | None = None,
) -> dict[str, str]:
    """Environment for Airflow commands run against this checkout's DAGs.

    With ``database_url`` (PostgreSQL) Airflow keeps its metadata there and runs
    tasks with the LocalExecutor; without it, in SQLite under the Airflow home.
    ``stack`` (default: the environment's) gives the Airflow home and port.
    """
    stack = stack or local_stack()
    env = dict(os.environ if base is None else base)
    home = airflow_home or stack.airflow_home
    port = stack.airflow_port
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            # Task workers reach the API server here; its default assumes port 8080.
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            # The DAGs leave the first retry's delay to Airflow's configuration (doubling after).
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": env.get("AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", "60"),
            # Tasks run from Airflow's working directory: make the data path the children read absolute.
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


def airflow(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("airflow"), *args], env=env or airflow_env(), check=check)


def ensure_redis(state: Path) -> bool:
    """Start a local Redis (files under ``state``) when nothing answers at REDIS_URL; True if we started one.

    A Redis the stack starts gets Tally's two ACL users (cache.acl): the jobs write
    as the writer, and the API reads as the read-only user. A Redis it finds
    running is used as configured (`tally redis-acl` prints the users to create).
    """
    import redis

    from cache.acl import create_users
    from tally.app.services import start_local_redis
    from tally.core.settings import get_settings

    settings = get_settings()
    run = state / "run"
    users_file = state / "redis" / "users.json"
    process = start_local_redis(settings.redis_url, state / "redis")
    if process is None:
        if (run / "redis.pid").exists() and users_file.exists():  # ours, left running by an earlier `up`
            _use_redis_users(json.loads(users_file.read_text()))
        return False
    run.mkdir(parents=True, exist_ok=True)
    (run / "redis.pid").write_text(str(process.pid))
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


CONNECT_START_SECONDS = 120


def start_connect(stack: LocalStack, master: str) -> str:
    """Start a Spark Connect server on 127.0.0.1 (``make up SPARK=connect``); return its sc:// URL.

    The server is one warm JVM and SparkSession that every hourly run reuses: the
    Airflow tasks run no JVM of their own. Its logs and scratch space are under the
    stack's state folder; ``down`` stops its process group.
    """
    from jobs.session import connect_server_command

    url = f"sc://127.0.0.1:{stack.connect_port}"
    if port_open(stack.connect_port):
        if (stack.run / f"{CONNECT}.pid").exists():  # ours, left running by an earlier `up`
            return url
        raise RuntimeError(f"port {stack.connect_port} is taken: set TALLY_CONNECT_PORT, or SPARK_REMOTE to use it")
    env = {
        **os.environ,
        "SPARK_LOG_DIR": str(stack.logs),
        "SPARK_LOCAL_DIRS": str(stack.state / "spark-scratch"),
        "SPARK_CONNECT_MODE": "0",
    }
    env.pop("SPARK_REMOTE", None)  # the server runs classic Spark; pyspark reads this variable too
    command = connect_server_command(master, "127.0.0.1", stack.connect_port)
    pid = start_background(stack.run, stack.logs, CONNECT, command, env)
    print(f"starting a Spark Connect server ({master}) at {url} ...")
    if not wait_port(stack.connect_port, CONNECT_START_SECONDS, pid):
        stop(stack.run, CONNECT)
        raise RuntimeError(f"the Spark Connect server did not start; see {stack.logs / (CONNECT + '.log')}")
    return url


def up(stack: LocalStack) -> int:
    """Airflow (UI + REST API on :8080), Redis if needed, and the API (:8000), in the background;
    with ``stack.spark == "connect"`` also a Spark Connect server the hourly runs use."""
    from tally.core.settings import get_settings

    if stack.spark not in SPARK_MODES:
        raise ValueError(f"SPARK={stack.spark!r}: expected one of {', '.join(SPARK_MODES)}")
    airflow_database = prepare_airflow_database()
    ensure_redis(stack.state)
    if stack.spark == "connect":
        os.environ["SPARK_REMOTE"] = start_connect(stack, get_settings().spark_master)
        get_settings.cache_clear()
    env = airflow_env(database_url=airflow_database, stack=stack)
    airflow_port, api_port = stack.airflow_port, stack.api_port
    print("preparing Airflow's metadata DB ...")
    run_logged(stack.logs, "airflow-db-migrate", [venv_bin("airflow"), "db", "migrate"], env)
    start_background(stack.run, stack.logs, "airflow", [venv_bin("airflow"), "standalone"], env)
    start_background(stack.run, stack.logs, "api", [venv_bin("tally"), "serve", "--port", str(api_port)], env)
    print(f"waiting for Airflow on http://127.0.0.1:{airflow_port} ...")
    airflow_ok = wait_http(f"http://127.0.0.1:{airflow_port}/api/v2/monitor/health", 180)
    api_ok = wait_http(f"http://127.0.0.1:{api_port}/health", 60)
    password_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text()).get("admin") if password_file.exists() else None
    password_text = password or f"see {password_file}"
    airflow_note = "" if airflow_ok else f"  [not answering yet: see {stack.logs / 'airflow.log'}]"
    api_note = "" if api_ok else f"  [not answering: see {stack.logs / 'api.log'}]"
    print(
        f"\nAirflow UI:  http://127.0.0.1:{airflow_port}  (user admin, password {password_text}){airflow_note}\n"
        f"Tally API:   http://127.0.0.1:{api_port}/docs{api_note}\n"
        + (f"Spark:       Connect server at {env['SPARK_REMOTE']}\n" if stack.spark == "connect" else "")
        + "Unpause and trigger tally_hourly, or trigger tally_recompute with a range. `make down` stops everything."
    )
    return 0 if airflow_ok and api_ok else 1


def down(stack: LocalStack) -> int:
    for name in ("api", "airflow", CONNECT, "redis"):
        stop(stack.run, name)
    return 0


def main(argv: list[str]) -> int:
    from tally.app.demo import demo  # imports this module: loaded once it is complete
    from tally.app.services import PostgresUnavailableError
    from tally.core.settings import get_settings

    stack = local_stack()
    commands = {"demo": demo, "up": up, "down": down}
    if argv and argv[0] == "airflow":
        env = airflow_env(database_url=get_settings().airflow_database_url, stack=stack)
        return airflow(*argv[1:], env=env, check=False).returncode
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m tally.app.local {{{'|'.join(commands)}|airflow ...}}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](stack)
    except PostgresUnavailableError as exc:
        print(f"{exc}\nStart PostgreSQL, or unset TALLY_AIRFLOW_DATABASE_URL to use SQLite.", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:  # a service that could not start, a bad SPARK=: say which
        print(f"{argv[0]}: {exc}\n`make down` stops what was started.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
