"""GET /health, and the API through Redis outages (unreachable, then back)."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from dashboard_api import create_app
from tally.core.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.support import api as support
from tests.support.api import AS_OF_E, AS_OF_REPUBLISH, H_RANGE, SwitchableProxy

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


# --- health and Redis outages ----------------------------------------------------


def test_health_reports_newest_hour(api: TestClient, redis_client: redis.Redis, api_layout: KeyLayout) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    body = response.json()
    # The data set's newest hour ended days ago: stale against the default limit, still 200.
    assert body["status"] == "stale" and body["redis"] == "ok" and body["max_lag_seconds"] == 7200
    assert body["lag_seconds"] > 7200
    assert body["newest_hour"] == "2026-11-28T05:00:00Z"
    assert body["published_at"] == redis_client.hget(api_layout.meta(), "published_at").decode()
    assert body["published_at"] in (AS_OF_E, AS_OF_REPUBLISH)


def test_unreachable_redis_is_503(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://:s3cret-pw@127.0.0.1:1/0"})
    with TestClient(create_app(down)) as api:
        health = api.get("/health")
        metric = api.get(f"/v1/metrics/revenue?{H_RANGE}")
        catalogue = api.get("/v1/metrics")
    assert health.status_code == 503
    assert health.json()["redis"] == "unreachable"
    assert health.json()["error"]["code"] == "redis_unavailable"
    assert metric.status_code == 503
    assert metric.json()["error"]["code"] == "redis_unavailable"
    assert "s3cret-pw" not in health.text + metric.text
    assert catalogue.status_code == 200  # the catalogue is the spec; it needs no Redis


def test_recovers_when_redis_comes_back(settings: Settings) -> None:
    proxy = SwitchableProxy()
    db = urlsplit(TEST_REDIS_URL).path or "/0"
    proxied = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}{db}"})
    url = f"/v1/metrics/orders?{H_RANGE}"
    try:
        with TestClient(create_app(proxied)) as api:
            assert api.get(url).json()["series"][0]["points"][0]["value"] == 3
            proxy.set_down()
            assert api.get(url).status_code == 503
            assert api.get("/health").status_code == 503
            proxy.up = True
            assert api.get(url).status_code == 200
            assert api.get("/health").status_code == 200
    finally:
        proxy.close()
