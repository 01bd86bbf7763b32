"""The catalogue: GET /v1/metrics lists the spec's metrics and cards; /docs and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from dashboard_api import create_app
from tally.core.settings import Settings
from tests.support import api as support
from tests.support.default_spec import DEFAULT_NAMES

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


def test_lists_metrics_in_spec_order(api: TestClient) -> None:
    body = api.get("/v1/metrics").json()
    assert [m["name"] for m in body["metrics"]] == DEFAULT_NAMES
    revenue = body["metrics"][1]
    assert revenue == {
        "name": "revenue",
        "description": "Sum of amount over purchase events.",
        "unit": "currency",
        "kind": "sum",
        "dimensions": ["country", "platform"],
        "grains": ["hour", "day", "week", "month"],
        "max_window_days": 90,
        "slices": [[], ["country"], ["platform"], ["country", "platform"]],  # every combination: none declared
        "sketch": None,
        "relative_error": None,
        "q": None,
    }
    stickiness = body["metrics"][-1]
    assert stickiness["grains"] == ["day"] and stickiness["max_window_days"] == 0


def test_sketch_metrics_state_their_sketch_and_nominal_error(api: TestClient) -> None:
    by_name = {m["name"]: m for m in api.get("/v1/metrics").json()["metrics"]}
    hll, theta, kll = by_name["active_users"], by_name["new_users"], by_name["order_value_p95"]
    assert (hll["sketch"], theta["sketch"], kll["sketch"]) == ("hll", "theta", "kll")
    # HLL at lg_k 14: about 0.8%; theta at lg_nom_entries 12: 1/sqrt(4095); KLL k=200: 1.33% rank error.
    assert 0.007 < hll["relative_error"] < 0.0095
    assert theta["relative_error"] == pytest.approx(1 / 4095**0.5)
    assert kll["relative_error"] == pytest.approx(0.0133, abs=0.0005) and kll["q"] == 0.95
    assert by_name["max_order"]["sketch"] is None and by_name["max_order"]["relative_error"] is None


def test_lists_the_default_specs_cards(api: TestClient) -> None:
    body = api.get("/v1/metrics").json()
    assert body["cards"] == ["revenue", "orders", "avg_order_value", "active_users", "conversion_rate"]
    schema = api.get("/openapi.json").json()["components"]["schemas"]["MetricsResponse"]
    assert "cards" in schema["required"] and schema["properties"]["cards"]["description"]


RIDES_SPEC = """
sources:
  rides:
    path: lake/rides/year={YYYY}/month={MM}/day={DD}/hour={HH}
    time: {column: started_ms, unit: ms}
    columns: {started_ms: long, rider: string, fare: double, city: string}
    dimensions: {city: city}
metrics:
  - {name: trips, description: Trips., unit: trips, kind: count, dimensions: [city]}
  - {name: fares, description: Fares., unit: currency, kind: sum, field: fare, dimensions: [city]}
  - {name: riders, description: Riders., unit: riders, kind: count_distinct, field: rider, dimensions: [city]}
dashboard: {cards: [riders, fares]}
"""


def test_cards_come_from_the_spec_in_its_order(redis_server: str, api_layout: KeyLayout, tmp_path: Path) -> None:
    spec_path = tmp_path / "rides.yaml"
    spec_path.write_text(RIDES_SPEC)
    settings = Settings(redis_url=redis_server, redis_prefix=api_layout.prefix, spec_path=spec_path)
    with TestClient(create_app(settings)) as rides:
        body = rides.get("/v1/metrics").json()
    assert [m["name"] for m in body["metrics"]] == ["trips", "fares", "riders"]
    assert body["cards"] == ["riders", "fares"]


def test_docs_and_openapi(api: TestClient) -> None:
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    openapi = api.get("/openapi.json")
    assert openapi.status_code == 200
    paths = openapi.json()["paths"]
    assert set(paths) >= {"/v1/metrics", "/v1/metrics/{name}", "/health"}
    ok = paths["/v1/metrics/{name}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/SeriesResponse")
