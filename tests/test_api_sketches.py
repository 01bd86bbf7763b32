"""The sketch-native endpoints' contract without Spark: shapes, hostile parameters, caching, publishing paths.

Real rollups (real HLL, theta and KLL sketches, tests/support/rollups.py) are
published to a real Redis and read over HTTP. Accuracy against raw files is
tests/test_sketch_metrics.py's job; this module pins what a client relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from cache.freshness import mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from cache.rehydrate import rehydrate
from cache.rollback import rollback_hour
from cache.tiers import enforce_tiers
from dashboard_api import create_app
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, TEST_REDIS_URL, delete_prefix
from tests.support.rollups import rollup_table, stats_table, synthetic_events, write_hour, write_synthetic_hour

FIRST = datetime(2026, 10, 26, tzinfo=UTC)  # a Monday
HOURS = [FIRST + timedelta(hours=i) for i in range(24 * 15)]
DAY = {"grain": "day", "start": "2026-10-26", "end": "2026-10-30"}
RETENTION = {"cohort": "new_users", "returning": "returning_users", "periods": "2", **DAY}
WEEKLY = {**RETENTION, "grain": "week", "end": "2026-11-02"}
LONG = {**RETENTION, "start": "2026-01-01", "end": "2026-10-28"}  # 300 days: fits the day limit
FUNNEL = {"steps": "viewers,carters,buyers", **DAY}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[TestClient]:
    """The default spec plus a theta count of sessions (another id space), published from real sketches."""
    folder = tmp_path_factory.mktemp("sketch-api")
    document = yaml.safe_load(Path(DEFAULT_SPEC_PATH).read_text())
    document["metrics"].append(
        {
            "name": "session_set",
            "description": "Sessions.",
            "unit": "sessions",
            "kind": "count_distinct",
            "sketch": "theta",
            "field": "session_id",
            "dimensions": ["platform"],
        }
    )
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    for index, hour in enumerate(HOURS):
        write_synthetic_hour(folder, hour, spec, seed=index)
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-sketch-api")
    rehydrate(client, layout, folder, spec, PublishOptions(superseded_ttl=60))
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, spec_path=spec_path, data_dir=folder)
    with TestClient(create_app(settings)) as test_client:
        yield test_client
    delete_prefix(client, layout)
    client.close()


def error(api: TestClient, path: str, params: dict[str, Any]) -> tuple[int, str, str]:
    response = api.get(path, params=params)
    body = response.json()
    assert "error" in body, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_retention_has_the_pinned_shape(api: TestClient) -> None:
    body = api.get("/v1/retention", params=RETENTION).json()
    assert {"cohort", "returning", "grain", "tz", "periods", "cohorts"} <= body.keys()
    assert (body["cohort"], body["returning"], body["grain"], body["tz"], body["periods"]) == (
        "new_users",
        "returning_users",
        "day",
        "UTC",
        2,
    )
    first = body["cohorts"][0]
    assert set(first) == {"start", "size", "complete", "periods"}
    assert first["start"] == "2026-10-26T00:00:00Z" and isinstance(first["size"], int)
    assert [p["offset"] for p in first["periods"]] == [0, 1, 2]
    assert set(first["periods"][0]) == {"offset", "start", "value", "rate", "complete", "revised"}
    assert first["periods"][1]["start"] == "2026-10-27T00:00:00Z"
    assert first["periods"][0]["rate"] == 1.0  # a cohort is all there at offset 0 (the same users signed up)
    # The last cohort's periods run past the data: not computed, null, incomplete.
    beyond = api.get("/v1/retention", params={**RETENTION, "start": "2026-11-08", "end": "2026-11-10"}).json()
    tail = beyond["cohorts"][-1]["periods"][-1]
    assert tail["start"] == "2026-11-11T00:00:00Z" and tail["value"] is None and tail["rate"] is None
    assert tail["complete"] is False


def test_funnel_has_the_pinned_shape(api: TestClient) -> None:
    body = api.get("/v1/funnel", params=FUNNEL).json()
    assert (body["steps"], body["grain"], body["tz"]) == (["viewers", "carters", "buyers"], "day", "UTC")
    assert len(body["buckets"]) == 4
    bucket = body["buckets"][0]
    assert set(bucket) == {"start", "complete", "revised", "steps"} and bucket["complete"] is True
    assert [s["metric"] for s in bucket["steps"]] == ["viewers", "carters", "buyers"]
    assert set(bucket["steps"][0]) == {"metric", "value", "rate_from_previous", "rate_from_first"}
    first, second, third = bucket["steps"]
    assert first["rate_from_previous"] is None and first["rate_from_first"] == 1.0
    assert first["value"] >= second["value"] >= third["value"]  # an intersection never grows


def test_bounds_appear_only_when_asked_for(api: TestClient) -> None:
    plain = api.get("/v1/metrics/active_users", params=DAY).json()
    assert "lower" not in plain["series"][0]["points"][0] and "q" not in plain
    bounded = api.get("/v1/metrics/active_users", params={**DAY, "bounds": "true"}).json()
    point = bounded["series"][0]["points"][0]
    assert point["lower"] <= point["value"] <= point["upper"]
    # Over single hours too (whose estimates alone are stored as values): the bounds come from the sketches.
    hourly = {"grain": "hour", "start": "2026-10-26T00:00:00Z", "end": "2026-10-26T03:00:00Z", "bounds": "true"}
    for name in ("active_users", "new_users"):
        response = api.get(f"/v1/metrics/{name}", params=hourly)
        assert response.status_code == 200, response.text
        assert all(p["lower"] <= p["value"] <= p["upper"] for p in response.json()["series"][0]["points"])
    funnel = api.get("/v1/funnel", params={**FUNNEL, "bounds": "true"}).json()
    assert all({"lower", "upper"} <= set(s) for b in funnel["buckets"] for s in b["steps"])
    retention = api.get("/v1/retention", params={**RETENTION, "bounds": "true"}).json()
    assert {"lower", "upper"} <= set(retention["cohorts"][0]["periods"][1])


def test_a_quantile_echoes_q_and_answers_the_same_twice(api: TestClient) -> None:
    first = api.get("/v1/metrics/order_value_p95", params={**DAY, "q": "0.5", "group_by": "country", "limit": "2"})
    again = api.get("/v1/metrics/order_value_p95", params={**DAY, "q": "0.5", "group_by": "country", "limit": "2"})
    assert first.json()["q"] == 0.5 and first.json() == again.json()
    assert [s["other"] for s in first.json()["series"]] == [False, False, True]
    assert api.get("/v1/metrics/order_value_p95", params=DAY).json()["q"] == 0.95  # the spec's q
    # A higher q never answers less (one distribution).
    values = [
        api.get("/v1/metrics/order_value_p95", params={**DAY, "q": q}).json()["series"][0]["points"][0]["value"]
        for q in ("0.1", "0.5", "0.9", "0.99")
    ]
    assert values == sorted(values) and values[0] < values[-1]


@pytest.mark.parametrize("q", ["0", "1", "-0.5", "1.5", "nan", "inf", "abc", "", "0.5.1", "1e400"])
def test_a_bad_q_is_bad_quantile(api: TestClient, q: str) -> None:
    status, code, message = error(api, "/v1/metrics/order_value_p95", {**DAY, "q": q})
    assert (status, code) == (400, "bad_quantile") and "between 0 and 1" in message


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "named"),
    [
        ("/v1/metrics/revenue", {**DAY, "q": "0.5"}, 400, "bad_parameter", "not a quantile"),
        ("/v1/metrics/revenue", {**DAY, "bounds": "true"}, 400, "bad_parameter", "bounds"),
        ("/v1/metrics/active_users", {**DAY, "bounds": "yes"}, 400, "bad_parameter", "bounds"),
        ("/v1/retention", {**RETENTION, "cohort": "nope"}, 404, "unknown_metric", "nope"),
        ("/v1/retention", {**RETENTION, "cohort": "active_users"}, 400, "incompatible_metric", "HLL"),
        ("/v1/retention", {**RETENTION, "returning": "max_order"}, 400, "incompatible_metric", "max_order"),
        ("/v1/retention", {**RETENTION, "returning": "session_set"}, 400, "mixed_id_spaces", "session_id"),
        ("/v1/retention", {k: v for k, v in RETENTION.items() if k != "cohort"}, 400, "bad_parameter", "cohort"),
        ("/v1/retention", {**RETENTION, "periods": "-1"}, 400, "bad_parameter", "periods"),
        ("/v1/retention", {**RETENTION, "periods": "91"}, 400, "bad_parameter", "0 to 90"),
        ("/v1/retention", {**RETENTION, "periods": "x"}, 400, "bad_parameter", "periods"),
        (
            "/v1/retention",
            {**WEEKLY, "periods": "53"},
            400,
            "bad_parameter",
            "0 to 52",
        ),
        ("/v1/retention", {**RETENTION, "grain": "hour"}, 400, "bad_grain", "hour"),
        ("/v1/retention", {**RETENTION, "start": "2026-10-26T05:00:00Z"}, 400, "bad_range", "midnight"),
        (
            "/v1/retention",
            {**LONG, "periods": "90"},
            400,
            "range_too_large",
            "cells",
        ),
        ("/v1/retention", {**RETENTION, "colour": "red"}, 400, "unknown_dimension", "colour"),
        ("/v1/retention", {**RETENTION, "platform": ""}, 400, "bad_parameter", "platform"),
        ("/v1/retention", {**RETENTION, "tz": "Mars/Base"}, 400, "bad_timezone", "Mars"),
        ("/v1/retention", {**RETENTION, "tz": "Asia/Kolkata"}, 400, "unsupported_timezone", "Kolkata"),
        ("/v1/funnel", {**FUNNEL, "steps": "viewers"}, 400, "bad_parameter", "2 to 8"),
        (
            "/v1/funnel",
            {**FUNNEL, "steps": ",".join(["viewers", "carters", "buyers"] * 3)},
            400,
            "bad_parameter",
            "2 to 8",
        ),
        ("/v1/funnel", {**FUNNEL, "steps": "viewers,viewers"}, 400, "bad_parameter", "more than once"),
        ("/v1/funnel", {**FUNNEL, "steps": "viewers,purchasers"}, 400, "incompatible_metric", "purchasers"),
        ("/v1/funnel", {**FUNNEL, "steps": "viewers,session_set"}, 400, "mixed_id_spaces", "session_set"),
        ("/v1/funnel", {**FUNNEL, "steps": "viewers,ghost"}, 404, "unknown_metric", "ghost"),
        ("/v1/funnel", {**FUNNEL, "end": "2026-10-26"}, 400, "bad_range", "after"),
        ("/v1/funnel", {**FUNNEL, "grain": "hour", "end": "2027-10-26"}, 400, "range_too_large", "hour"),
        ("/v1/funnel", {**FUNNEL, "event_type": "purchase"}, 400, "unknown_dimension", "event_type"),
    ],
)
def test_hostile_parameters_get_4xx_json_errors(api, path, params, status, code, named) -> None:
    assert error(api, path, params)[:2] == (status, code)
    assert named in error(api, path, params)[2]


def test_a_filter_on_a_dimension_every_metric_stores_is_answered(api: TestClient) -> None:
    us = api.get("/v1/funnel", params={**FUNNEL, "platform": "web"}).json()
    everyone = api.get("/v1/funnel", params=FUNNEL).json()
    assert all(
        a["steps"][0]["value"] <= b["steps"][0]["value"]
        for a, b in zip(us["buckets"], everyone["buckets"], strict=True)
    )
    # The quantile stores [country] and [platform], not both together: that pair is not stored.
    status, code, _ = error(api, "/v1/metrics/order_value_p95", {**DAY, "country": "US", "platform": "web"})
    assert (status, code) == (400, "slice_not_stored")
    status, code, _ = error(api, "/v1/funnel", {**FUNNEL, "country": "US"})  # not a dimension of the steps
    assert (status, code) == (400, "unknown_dimension")


def test_etags_and_the_response_cache_cover_the_new_endpoints(api: TestClient) -> None:
    for path, params in (("/v1/retention", RETENTION), ("/v1/funnel", FUNNEL)):
        first = api.get(path, params=params)
        assert first.status_code == 200 and first.headers["ETag"]
        assert api.get(path, params=params, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
        assert api.get(path, params=params).content == first.content


def test_the_catalogue_and_openapi_describe_the_new_endpoints(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    for path in ("/v1/retention", "/v1/funnel"):
        assert path in document["paths"]
    names = {p["name"] for p in document["paths"]["/v1/retention"]["get"]["parameters"]}
    assert {"cohort", "returning", "grain", "start", "end", "periods", "tz", "bounds"} <= names
    series = {p["name"] for p in document["paths"]["/v1/metrics/{name}"]["get"]["parameters"]}
    assert {"q", "bounds"} <= series
    schemas = document["components"]["schemas"]
    assert {"RetentionResponse", "FunnelResponse", "Cohort", "RetentionPeriod", "FunnelStep"} <= schemas.keys()


# --- the publishing paths: revisions, rollback, pending marks, the day tier ---------------------


@pytest.fixture
def fresh(tmp_path: Path, redis_client: redis.Redis, layout: KeyLayout) -> Iterator[tuple[TestClient, Path]]:
    """Two days of the default spec's rollups, published under the test's own prefix."""
    spec = load_spec(DEFAULT_SPEC_PATH)
    for index, hour in enumerate(HOURS[:48]):
        write_synthetic_hour(tmp_path, hour, spec, seed=index)
    rehydrate(redis_client, layout, tmp_path, spec, PublishOptions(superseded_ttl=60))
    settings = Settings(redis_url=TEST_REDIS_URL, redis_prefix=layout.prefix, data_dir=tmp_path)
    with TestClient(create_app(settings)) as test_client:
        yield test_client, tmp_path


TWO_DAYS = {"grain": "day", "start": "2026-10-26", "end": "2026-10-28"}


def _answers(api: TestClient) -> dict[str, Any]:
    retention = {"cohort": "new_users", "returning": "returning_users", "periods": "1", **TWO_DAYS}
    return {
        "funnel": api.get("/v1/funnel", params={"steps": "viewers,carters,buyers", **TWO_DAYS}).json()["buckets"],
        "retention": api.get("/v1/retention", params=retention).json()["cohorts"],
        "p95": api.get("/v1/metrics/order_value_p95", params=TWO_DAYS).json()["series"],
        "max": api.get("/v1/metrics/max_order", params=TWO_DAYS).json()["series"],
    }


def test_a_revision_and_its_rollback_reach_every_new_endpoint(fresh, redis_client, layout) -> None:
    api, data_dir = fresh
    spec = load_spec(DEFAULT_SPEC_PATH)
    before = _answers(api)
    assert not before["funnel"][1]["revised"] and not before["retention"][0]["periods"][1]["revised"]
    late = HOURS[30]  # 2026-10-27T06Z: the second day
    # Late data: new users, larger orders.
    events = [{**e, "user_id": f"late{i}", "amount": e["amount"] * 10} for i, e in enumerate(synthetic_events(9, 400))]
    write_hour(
        data_dir, late, rollup_table(spec, events), stats_table(spec, 400, "fp-late", datetime(2026, 11, 1, tzinfo=UTC))
    )
    publish_hours(redis_client, layout, data_dir, spec, [late], PublishOptions(superseded_ttl=60))
    revised = _answers(api)
    assert revised["funnel"][1]["revised"] and not revised["funnel"][0]["revised"]
    assert revised["funnel"][1]["steps"] != before["funnel"][1]["steps"]
    assert revised["retention"][0]["periods"][1]["revised"] and not revised["retention"][0]["periods"][0]["revised"]
    assert revised["p95"][0]["points"][1]["revised"] and revised["max"][0]["points"][1]["revised"]
    rollback_hour(redis_client, layout, late, spec=spec)
    back = _answers(api)
    assert back["funnel"][1]["steps"] == before["funnel"][1]["steps"]
    assert back["retention"][0]["periods"][1]["value"] == before["retention"][0]["periods"][1]["value"]
    assert back["p95"][0]["points"][1]["value"] == before["p95"][0]["points"][1]["value"]
    assert back["funnel"][1]["revised"]  # what was served changed twice


def test_a_pending_hour_makes_its_buckets_incomplete(fresh, redis_client, layout) -> None:
    api, _ = fresh
    mark_pending(redis_client, layout, HOURS[:48], {HOURS[5]: "input_changed"})
    answers = _answers(api)
    assert not answers["funnel"][0]["complete"] and answers["funnel"][1]["complete"]
    assert not answers["retention"][0]["complete"] and not answers["retention"][0]["periods"][0]["complete"]
    assert not answers["p95"][0]["points"][0]["complete"]


def test_the_day_tier_answers_the_new_kinds_as_the_hours_did(fresh, redis_client, layout) -> None:
    api, _ = fresh
    spec = load_spec(DEFAULT_SPEC_PATH)
    before = _answers(api)
    now = FIRST + timedelta(days=5)
    report = enforce_tiers(
        redis_client, layout, spec, hour_retention_days=1, day_retention_days=0, superseded_ttl=60, now=now
    )
    assert report.moved_days  # both days left the hour tier: only their day aggregates are kept
    after = _answers(api)
    assert after == before
