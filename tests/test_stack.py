"""`make up` as a person uses it: Airflow's scheduler and REST API, the Tally API, then `make down`.

Starts the local stack (`python -m tally.app.local up`, what `make up` runs) on free
ports with its own Airflow home, state folder, data folder and Redis prefix.
Through Airflow's REST API (what the UI's buttons call) it unpauses the DAGs,
triggers `tally_recompute` over a range and `tally_hourly` for the last complete
hour, and waits until the Tally API serves those hours' numbers.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tally.app.generate import generate
from tally.core.layout import floor_hour, format_hour
from tests.conftest import TEST_PREFIX
from tests.support.airflow import local_stack
from tests.support.net import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def hour_values(api: str, metric: str, start: datetime, end: datetime) -> list:
    response = httpx.get(f"{api}/v1/metrics/{metric}", params={"start": format_hour(start), "end": format_hour(end)})
    if response.status_code == 503 and response.json()["error"]["code"] == "cache_cold":
        return [None]  # nothing published yet
    assert response.status_code == 200, response.text
    return [p["value"] for p in response.json()["series"][0]["points"]]


@pytest.fixture
def stack(tmp_path: Path, redis_server: str, redis_client):
    with local_stack(tmp_path, redis_server, redis_client, f"{TEST_PREFIX}-stack-{os.getpid()}") as (env, output):
        assert "password" in output and "see " not in output.split("password", 1)[1].split(")")[0]
        yield env, tmp_path / "data"


def test_trigger_from_airflow_and_see_numbers_in_the_api(stack):
    env, data_dir = stack
    airflow = f"http://127.0.0.1:{env['TALLY_AIRFLOW_PORT']}"
    api = f"http://127.0.0.1:{env['TALLY_API_PORT']}"
    last_hour = floor_hour(datetime.now(UTC)) - timedelta(hours=1)
    day_start = last_hour.replace(hour=0) - timedelta(days=1)
    generate(data_dir, day_start.date(), days=2, events_per_hour=200, seed=5, progress=False)
    recompute_start, recompute_end = day_start, day_start + timedelta(hours=3)

    password_file = Path(env["TALLY_AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text())["admin"]
    token = httpx.post(f"{airflow}/auth/token", json={"username": "admin", "password": password}).json()
    client = httpx.Client(base_url=f"{airflow}/api/v2", headers={"Authorization": f"Bearer {token['access_token']}"})
    wait_for(lambda: client.get("/dags/tally_recompute").status_code == 200, 180, "the DAGs to be parsed")
    conf = {"start": recompute_start.isoformat(), "end": recompute_end.isoformat()}
    triggered = client.post("/dags/tally_recompute/dagRuns", json={"logical_date": None, "conf": conf})
    assert triggered.status_code == 200, triggered.text
    for dag_id in ("tally_recompute", "tally_hourly"):  # unpausing tally_hourly schedules the last hour
        assert client.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200

    def published(start: datetime, end: datetime) -> list | None:
        values = hour_values(api, "events", start, end)
        return values if all(v is not None for v in values) else None

    recomputed = wait_for(lambda: published(recompute_start, recompute_end), 420, "tally_recompute's hours")
    hourly = wait_for(lambda: published(last_hour, last_hour + timedelta(hours=1)), 420, "tally_hourly's hour")
    assert all(v > 0 for v in recomputed + hourly)
    # Nothing outside what was triggered or scheduled is published.
    assert hour_values(api, "events", recompute_end, recompute_end + timedelta(hours=1)) == [None]

    def hourly_run_succeeded() -> bool:
        # The scheduler marks the run after its last task: poll rather than race it.
        runs = client.get("/dags/tally_hourly/dagRuns").json()["dag_runs"]
        hour = last_hour.strftime("%Y-%m-%dT%H")
        return any(r["state"] == "success" and r["data_interval_start"].startswith(hour) for r in runs)

    wait_for(hourly_run_succeeded, 120, "tally_hourly's run to be marked successful")
