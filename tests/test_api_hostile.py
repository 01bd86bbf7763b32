"""Query values that try to reach other keys or slices get 4xx or an empty series, never other data.

The published hour holds slices whose values are themselves hostile (separators,
wildcards, control characters), next to an ordinary one. Every probe must come
back either as a 4xx JSON error or as a series of zeros, except a probe that
names an existing value exactly, which must get that slice's number and no other.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cache.builds import HourBuild, build_id
from cache.keys import slice_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from tally.core.settings import Settings

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
RANGE = {"grain": "hour", "start": "2026-11-20T10:00Z", "end": "2026-11-20T11:00Z"}
# country value -> events; each value also tries to look like another slice or key.
STORED = {
    "US": 1,
    "a=b,platform=web": 20,
    "*": 300,
    "x:y": 4000,
    "ctl\x00\x1b[31m\r\n": 50000,
    "ünï©ødé": 600000,
}
PROBES = [
    "U*",
    "?S",
    "[U]S",
    "US,platform=web",
    "US\x00",
    "a:b",
    "tally:pointer",
    "../../etc/passwd",
    "%2A",
    "%00",
    "\u202eSU",
    "a=b",
    "x" * 8000,
    "Ü",
    "_",
]


@pytest.fixture
def api(redis_client, layout, redis_server):
    values = {
        "events": {
            "_": float(sum(STORED.values())),
            **{slice_id({"country": country}): float(n) for country, n in STORED.items()},
        },
        "revenue": {"_": 7.0, slice_id({"country": "US"}): 7.0},
    }
    publish_builds(
        redis_client, layout, [HourBuild(HOUR, build_id(values, {}), values, {}, {})], PublishOptions(superseded_ttl=60)
    )
    with TestClient(create_app(Settings(redis_url=redis_server, redis_prefix=layout.prefix))) as client:
        yield client


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: repr(p[:20]))
def test_a_probe_gets_an_error_or_zeros(api, probe):
    response = api.get("/v1/metrics/events", params={**RANGE, "country": probe})
    if 400 <= response.status_code < 500:
        assert response.json()["error"]["code"], response.text
        return
    assert response.status_code == 200, response.text
    [series] = response.json()["series"]
    assert series["labels"] == {"country": probe}
    assert [p["value"] for p in series["points"]] == [0]


@pytest.mark.parametrize("country", list(STORED), ids=lambda c: repr(c))
def test_an_exact_value_gets_exactly_its_slice(api, country):
    response = api.get("/v1/metrics/events", params={**RANGE, "country": country})
    assert response.status_code == 200, response.text
    assert [p["value"] for p in response.json()["series"][0]["points"]] == [STORED[country]]


def test_group_by_returns_the_values_verbatim(api):
    body = api.get("/v1/metrics/events", params={**RANGE, "group_by": "country"}).json()
    got = {s["labels"]["country"]: s["points"][0]["value"] for s in body["series"]}
    assert got == STORED


def test_a_metric_name_cannot_reach_another_key(api):
    for name in ("events:values", "revenue%2F..%2Fevents", "*", "events%00", "..%2Fpointer"):
        response = api.get(f"/v1/metrics/{name}", params=RANGE)
        assert response.status_code == 404 and response.json()["error"]["code"] in {"unknown_metric", "not_found"}


def test_a_parameter_name_cannot_smuggle_a_filter(api):
    for name in ("country ", "Country", "country\x00", "revenue"):
        response = api.get("/v1/metrics/events", params={**RANGE, name: "US"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_dimension", name
