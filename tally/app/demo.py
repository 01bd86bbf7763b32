"""``make demo``: sample data -> Airflow runs -> the API in the foreground, and what it prints.

The range and the example queries are small pure functions (tests/test_demo.py); :func:`demo`
runs the steps on the local stack (tally.app.local) and stops the Redis it started on the way out.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tally.app.local import airflow_env, ensure_redis, prepare_airflow_database
from tally.app.local_config import LocalStack
from tally.app.processes import run_logged, stop, venv_bin

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


def demo(stack: LocalStack) -> int:
    """Sample data -> Airflow runs -> API in the foreground; Ctrl-C stops it all."""
    from tally.core.settings import get_settings

    airflow_database = prepare_airflow_database()
    started_redis = ensure_redis(stack.state)
    try:
        env = airflow_env(database_url=airflow_database, stack=stack)
        data_dir = Path(env["TALLY_DATA_DIR"])
        start, end = demo_range(datetime.now(UTC))
        print(f"generating {DEMO_DAYS} days of sample events, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ...")
        subprocess.run(
            [
                venv_bin("tally"),
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
        airflow = venv_bin("airflow")
        print("preparing Airflow's metadata DB ...")
        run_logged(stack.logs, "airflow-db-migrate", [airflow, "db", "migrate"], env)
        last = end - timedelta(hours=1)
        conf = json.dumps({"start": start.isoformat(), "end": last.isoformat()})
        print(f"recomputing {start:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC through Airflow (tally_recompute) ...")
        recompute = [airflow, "dags", "test", "tally_recompute", "--conf", conf]
        run_logged(stack.logs, "demo-tally_recompute", recompute, env)
        # A manual tally_hourly run processes the hour that ended at its logical date.
        print(f"running tally_hourly for {last:%Y-%m-%d %H}:00 UTC through Airflow ...")
        run_logged(stack.logs, "demo-tally_hourly", [airflow, "dags", "test", "tally_hourly", end.isoformat()], env)
        print(demo_banner(f"http://127.0.0.1:{stack.api_port}", start, end))
        from dashboard_api.server import serve

        # uvicorn re-raises the signal that stopped it; for SIGTERM that would end the
        # process before `finally` could stop the Redis this demo started.
        signal.signal(signal.SIGTERM, _interrupt)
        serve(host="127.0.0.1", port=stack.api_port, settings=get_settings())
    except KeyboardInterrupt:
        pass
    finally:
        if started_redis:
            stop(stack.run, "redis")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
