"""End to end through real Airflow, Spark, Redis and the HTTP API, checked against pandas.

Sample events -> `airflow dags test tally_hourly` (one hour) and `tally_recompute`
(a range) -> `tally serve` over HTTP -> compared with an independent pandas
computation over the same raw files.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bench.server import start_server
from cache.keys import KeyLayout
from tally.app.generate import generate
from tally.core.layout import format_hour
from tests.conftest import TEST_PREFIX, delete_prefix, event, write_events
from tests.support import reference
from tests.support.airflow import prepared_env, run_airflow
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

DAY = date(2026, 11, 26)
T0 = datetime(2026, 11, 26, tzinfo=UTC)
HOURS = [T0 + timedelta(hours=i) for i in range(3)]
ADDITIVE = ("events", "orders", "revenue", "signups")
DISTINCT = ("active_users", "sessions", "purchasers")


PIPELINE_ENV: dict[str, dict[str, str]] = {}


def pipeline_env(pipeline: tuple[str, Path]) -> dict[str, str]:
    return PIPELINE_ENV[pipeline[0]]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, redis_server: str):
    """Run the pipeline through Airflow once; yield (api base url, data dir)."""
    import redis

    data_dir = tmp_path_factory.mktemp("data")
    generate(data_dir, DAY, days=1, events_per_hour=1500, seed=11, progress=False)
    prefix = f"{TEST_PREFIX}-e2e-{os.getpid()}"
    env = prepared_env(
        tmp_path_factory.mktemp("airflow-home"),
        TALLY_DATA_DIR=str(data_dir),
        TALLY_REDIS_PREFIX=prefix,
        REDIS_URL=redis_server,
        SPARK_MASTER="local[2]",
    )
    # A manual tally_hourly run processes the hour that ended at its logical date.
    hourly = run_airflow(env, "dags", "test", "tally_hourly", (HOURS[2] + timedelta(hours=1)).isoformat())
    assert "DagRun Finished" in hourly.stdout + hourly.stderr and "state=success" in hourly.stdout + hourly.stderr, (
        hourly.stdout[-4000:] + hourly.stderr[-4000:]
    )
    # The aggregate task's log shows the hour's run statistics.
    assert f"run statistics {format_hour(HOURS[2])}: rows read" in hourly.stdout + hourly.stderr
    conf = json.dumps({"start": HOURS[0].isoformat(), "end": HOURS[2].isoformat()})
    recompute = run_airflow(env, "dags", "test", "tally_recompute", "--conf", conf)
    assert "state=success" in recompute.stdout + recompute.stderr, recompute.stdout[-4000:] + recompute.stderr[-4000:]
    assert all(f"run statistics {format_hour(h)}: rows read" in recompute.stdout + recompute.stderr for h in HOURS[:2])

    port = free_port()
    server = start_server(redis_server, prefix, port)
    base = f"http://127.0.0.1:{port}"
    try:
        PIPELINE_ENV[base] = env
        yield base, data_dir
    finally:
        server.terminate()
        server.wait(timeout=10)
        client = redis.Redis.from_url(redis_server)
        delete_prefix(client, KeyLayout(prefix))


def series(base: str, metric: str, **params) -> dict:
    response = httpx.get(f"{base}/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def close(actual: float, expected: float, tolerance: float) -> bool:
    return abs(actual - expected) <= tolerance * max(abs(expected), 1)


@pytest.mark.parametrize("metric", ADDITIVE + DISTINCT + ("avg_order_value", "conversion_rate"))
def test_hourly_values_match_pandas(pipeline, metric):
    base, data_dir = pipeline
    body = series(base, metric, grain="hour", start="2026-11-26T00:00:00Z", end="2026-11-26T05:00:00Z")
    points = body["series"][0]["points"]
    assert [p["ts"] for p in points] == [f"2026-11-26T0{i}:00:00Z" for i in range(5)]
    for hour, point in zip(HOURS, points, strict=False):
        expected = reference.metric(reference.valid_events(data_dir, [hour]), metric)
        tolerance = 0.03 if metric in DISTINCT or metric == "conversion_rate" else 1e-9
        assert close(point["value"], expected, tolerance), (metric, hour, point, expected)
    assert [p["value"] for p in points[3:]] == [None, None]  # not computed yet: null, never 0
    assert body["as_of"] is not None


@pytest.mark.parametrize("metric", ADDITIVE + DISTINCT + ("avg_order_value", "conversion_rate"))
def test_day_values_union_their_hours(pipeline, metric):
    base, data_dir = pipeline
    body = series(base, metric, grain="day", start="2026-11-26", end="2026-11-27")
    [point] = body["series"][0]["points"]
    expected = reference.metric(reference.valid_events(data_dir, HOURS), metric)
    tolerance = 0.03 if metric in DISTINCT or metric == "conversion_rate" else 1e-9
    assert close(point["value"], expected, tolerance), (metric, point, expected)
    if metric in DISTINCT:  # a union, not a sum of hourly counts
        hourly_sum = sum(reference.metric(reference.valid_events(data_dir, [h]), metric) for h in HOURS)
        assert point["value"] < hourly_sum * 0.97 or metric == "sessions"


def test_group_by_and_filters_match_pandas(pipeline):
    base, data_dir = pipeline
    events = reference.valid_events(data_dir, [HOURS[1]])
    body = series(
        base,
        "revenue",
        grain="hour",
        start="2026-11-26T01:00Z",
        end="2026-11-26T02:00Z",
        group_by="country",
        platform="web",
    )
    got = {s["labels"]["country"]: s["points"][0]["value"] for s in body["series"]}
    assert all(s["labels"]["platform"] == "web" for s in body["series"])
    web = events[events["platform"] == "web"]
    expected = web[web["event_type"] == "purchase"].groupby("country")["amount"].sum().to_dict()
    assert got.keys() == expected.keys()
    assert all(close(got[c], expected[c], 1e-9) for c in expected)


def test_health_reports_newest_hour(pipeline):
    base, _ = pipeline
    body = httpx.get(f"{base}/health").json()
    # Fixed sample dates: long past the freshness limit, so stale (and still served).
    assert body["status"] == "stale" and body["newest_hour"] == "2026-11-26T02:00:00Z"


def test_recompute_of_a_range_with_no_input_fails_naming_the_folders(pipeline):
    base, data_dir = pipeline
    env = PIPELINE_ENV[base]
    conf = json.dumps({"start": "2026-10-01T00:00:00+00:00", "end": "2026-10-02T00:00:00+00:00"})
    run = run_airflow(env, "dags", "test", "tally_recompute", "--conf", conf)
    output = run.stdout + run.stderr
    assert "state=failed" in output or "DagRun failed" in output, output[-4000:]
    assert "none of the 24 hour(s) from 2026-10-01T00:00:00Z to 2026-10-01T23:00:00Z has arrived" in output
    assert str(data_dir / "raw" / "events" / "dt=2026-10-01" / "hour=00") in output


def test_hour_that_never_arrived_fails_the_sensor_clearly_and_publishes_nothing(pipeline):
    base, _ = pipeline
    env = pipeline_env(pipeline)
    # 2026-11-25T23:00 has no folder and ended long ago: the sensor gives up at once.
    run = run_airflow(env, "dags", "test", "tally_hourly", "2026-11-26T00:00:00+00:00")
    output = run.stdout + run.stderr
    assert "state=failed" in output or "DagRun failed" in output, output[-3000:]
    assert "raw events for 2026-11-25T23:00:00Z never arrived" in output
    assert "dt=2026-11-25/hour=23 does not exist" in output
    body = series(base, "events", grain="hour", start="2026-11-25T23:00Z", end="2026-11-26T00:00Z")
    assert body["series"][0]["points"][0]["value"] is None


def test_tally_reconcile_recomputes_a_late_file_and_marks_the_hour_revised(pipeline):
    """Last in this module: it adds a raw file, which every reference comparison above reads."""
    base, data_dir = pipeline
    env = pipeline_env(pipeline)
    hour_params = {"grain": "hour", "start": "2026-11-26T00:00Z", "end": "2026-11-26T03:00Z"}
    before = series(base, "events", **hour_params)["series"][0]["points"]
    runs_params = {"start": hour_params["start"], "end": hour_params["end"]}
    runs_before = httpx.get(f"{base}/v1/runs", params=runs_params).json()["runs"]
    late = [event(f"late-{i}", f"2026-11-26T01:{i:02d}:30", user_id=f"late-user-{i}") for i in range(7)]
    write_events(data_dir, T0 + timedelta(hours=1), late, name="late-arrival.parquet")

    # The daily run at 03:30 the next day looks back TALLY_RECONCILE_HORIZON_DAYS over what was built.
    run = run_airflow(env, "dags", "test", "tally_reconcile", "2026-11-27T03:30:00+00:00")
    output = run.stdout + run.stderr
    assert "state=success" in output, output[-4000:]

    after = series(base, "events", **hour_params)["series"][0]["points"]
    assert [p["value"] for p in after] == [before[0]["value"], before[1]["value"] + 7, before[2]["value"]]
    assert [p["revised"] for p in after] == [False, True, False]
    assert all(p["complete"] for p in after)
    assert after[1]["value"] == reference.metric(reference.valid_events(data_dir, [T0 + timedelta(hours=1)]), "events")
    runs_after = httpx.get(f"{base}/v1/runs", params=runs_params).json()["runs"]
    # Exactly the changed hour was rebuilt: the others keep their build and publish time.
    assert [r["published_at"] for r in runs_after[::2]] == [r["published_at"] for r in runs_before[::2]]
    assert runs_after[1]["revised_from"] == runs_before[1]["build"] != runs_after[1]["build"]
