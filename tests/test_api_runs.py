"""GET /v1/runs: the run statistics of the published hours."""

from __future__ import annotations

from datetime import timedelta

import redis
from fastapi.testclient import TestClient

from cache.builds import HourBuild, build_id
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from tally.core.settings import Settings
from tests.support import api as support
from tests.support.api import HOUR_A, HOUR_B, HOUR_D, HOUR_E, HOUR_R, at

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


def test_runs_without_a_range_are_the_newest_hours(api: TestClient) -> None:
    body = api.get("/v1/runs").json()
    expected = [HOUR_R, HOUR_A, HOUR_B, HOUR_D, HOUR_E]  # every computed hour: fewer than 24
    assert [run["hour"] for run in body["runs"]] == [h.strftime("%Y-%m-%dT%H:00:00Z") for h in expected]
    only_start = api.get("/v1/runs", params={"start": "2026-11-27T10:00Z"})
    assert only_start.status_code == 400 and "'end'" in only_start.json()["error"]["message"]


def test_runs_without_a_range_stop_at_a_day(redis_server: str, redis_client: redis.Redis, layout: KeyLayout) -> None:
    hours = [at(20, 0) + timedelta(hours=i) for i in range(30)]
    builds = []
    for i, hour in enumerate(hours):
        counts = {"events": {"_": float(i)}}
        builds.append(HourBuild(hour, build_id(counts, {}), counts, {}, {"rows_read": i}))
    publish_builds(redis_client, layout, builds, PublishOptions(superseded_ttl=60))
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as api:
        runs = api.get("/v1/runs").json()["runs"]
    assert [r["hour"] for r in runs] == [h.strftime("%Y-%m-%dT%H:00:00Z") for h in hours[-24:]]
    assert [r["rows_read"] for r in runs] == list(range(6, 30))


def test_runs_show_every_run_statistic():
    """GET /v1/runs is typed from the one list of run statistics: a new field cannot be left out unnoticed."""
    from dashboard_api.models import Run
    from tally.core.runstats import FIELDS

    internal = {"input_fingerprint", "metric_fingerprints"}  # build identity, not statistics a reader needs
    assert set(FIELDS) - internal <= set(Run.model_fields)
