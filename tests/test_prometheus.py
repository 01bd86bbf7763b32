"""GET /metrics: request counts and latencies by route template and status, and freshness lag from Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from dashboard_api.metrics import install_metrics
from tally.core.settings import Settings
from tests.support.builds import events_build

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HOURS = [NOW - timedelta(hours=h) for h in range(6, 2, -1)]  # the newest ended two hours ago
TOKEN = "s3cret"


def metrics_app(settings: Settings) -> FastAPI:
    # Works whether or not create_app installs the metrics itself (install is idempotent).
    app = create_app(settings)
    install_metrics(app)
    return app


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics", headers=headers)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def requests(samples: dict, method: str, route: str, status: int) -> float:
    return samples.get(("tally_api_requests_total", (("method", method), ("route", route), ("status", str(status)))), 0)


def latency_count(samples: dict, method: str, route: str) -> float:
    return samples.get(("tally_api_request_duration_seconds_count", (("method", method), ("route", route))), 0)


@pytest.fixture
def settings(redis_server, layout) -> Settings:
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix)


@pytest.fixture
def published(redis_client, layout) -> None:
    publish_builds(redis_client, layout, [events_build(h, 1) for h in HOURS], PublishOptions(superseded_ttl=60))


def test_requests_are_counted_by_route_template_and_status(settings, published):
    params = {"start": HOURS[0].strftime("%Y-%m-%dT%H:00Z"), "end": NOW.strftime("%Y-%m-%dT%H:00Z")}
    with TestClient(metrics_app(settings)) as api:
        before = scrape(api)
        for _ in range(3):  # the second and third are replies of the response cache: counted too
            assert api.get("/v1/metrics/events", params=params).status_code == 200
        assert api.get("/v1/metrics/no_such_metric", params=params).status_code == 404
        assert api.get("/v1/metrics/events", params={"start": "nonsense"}).status_code == 400
        assert api.head("/health").status_code == 200
        assert api.post("/v1/metrics").status_code == 405
        for path in ("/nowhere/1", "/nowhere/2"):
            assert api.get(path).status_code == 404
        after = scrape(api)

    def grew(method: str, route: str, status: int) -> float:
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert grew("GET", "/v1/metrics/{name}", 200) == 3
    assert grew("GET", "/v1/metrics/{name}", 404) == 1
    assert grew("GET", "/v1/metrics/{name}", 400) == 1
    assert grew("HEAD", "/health", 200) == 1
    assert grew("other", "/v1/metrics", 405) == 1
    assert grew("GET", "unmatched", 404) == 2  # one series, whatever the paths
    assert requests(after, "GET", "/metrics", 200) >= 1  # the first scrape
    assert latency_count(after, "GET", "/v1/metrics/{name}") - latency_count(before, "GET", "/v1/metrics/{name}") == 5
    # Raw paths never become labels.
    assert not [key for key in after if any("no_such_metric" in v or "nowhere" in v for _, v in key[1])]


def test_freshness_lag_is_what_health_says(settings, published):
    with TestClient(metrics_app(settings)) as api:
        health = api.get("/health").json()
        samples = scrape(api)
    assert samples[("tally_redis_up", ())] == 1
    assert samples[("tally_pending_hours", ())] == 0
    assert health["lag_seconds"] == pytest.approx(samples[("tally_freshness_lag_seconds", ())], abs=1)
    assert samples[("tally_freshness_lag_seconds", ())] == pytest.approx(
        (datetime.now(UTC) - HOURS[-1] - timedelta(hours=1)).total_seconds(), abs=1
    )


def test_health_and_metrics_apply_one_freshness_limit(settings, published):
    lag = (datetime.now(UTC) - HOURS[-1] - timedelta(hours=1)).total_seconds()  # two to three hours
    for limit, status in ((int(lag) + 3600, "ok"), (int(lag) - 1800, "stale")):
        with TestClient(metrics_app(settings.model_copy(update={"max_lag_seconds": limit}))) as api:
            response = api.get("/health")
            samples = scrape(api)
        assert response.status_code == 200  # stale is still served
        assert (response.json()["status"], response.json()["max_lag_seconds"]) == (status, limit)
        assert samples[("tally_max_lag_seconds", ())] == limit


def test_the_default_limit_is_two_hours_from_the_environment(monkeypatch):
    assert Settings().max_lag_seconds == 7200
    monkeypatch.setenv("TALLY_MAX_LAG_SECONDS", "900")
    assert Settings().max_lag_seconds == 900


def test_a_cold_cache_has_no_lag_and_a_dead_redis_still_scrapes(settings):
    with TestClient(metrics_app(settings)) as api:
        cold = scrape(api)
    assert cold[("tally_redis_up", ())] == 1 and ("tally_freshness_lag_seconds", ()) not in cold
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(metrics_app(dead)) as api:
        samples = scrape(api)
    assert samples[("tally_redis_up", ())] == 0 and ("tally_freshness_lag_seconds", ()) not in samples


def test_metrics_need_the_token_when_one_is_set_and_stay_out_of_openapi(settings):
    with TestClient(metrics_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}))) as api:
        assert api.get("/metrics").status_code == 401
        samples = scrape(api, authorization=f"Bearer {TOKEN}")
        assert "/metrics" not in api.get("/openapi.json", headers={"authorization": f"Bearer {TOKEN}"}).json()["paths"]
    assert requests(samples, "GET", "/metrics", 401) == 1  # refusals are counted: the middleware is outside


def test_each_app_has_its_own_registry_and_install_is_idempotent(settings):
    first, second = metrics_app(settings), metrics_app(settings)
    assert install_metrics(first) is install_metrics(first)
    assert first.state.request_metrics.registry is not second.state.request_metrics.registry
    assert [r.path for r in first.routes].count("/metrics") == 1
