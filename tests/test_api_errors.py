"""Errors: every refusal has a stable code and a JSON body naming the parameter; no traceback leaks."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from dashboard_api import create_app
from tally.core.layout import hour_field
from tally.core.settings import Settings
from tests.support import api as support
from tests.support.api import CORRUPT_HOUR, H_RANGE

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


def test_unsupported_timezone_names_an_instant_inside_the_range(api: TestClient) -> None:
    response = api.get("/v1/metrics/revenue?grain=day&tz=Asia/Kolkata&start=2026-11-28&end=2026-11-30")
    message = response.json()["error"]["message"]
    # The range is [2026-11-27T18:30Z, 2026-11-29T18:30Z): local midnights of the 28th and the 30th.
    named = datetime.fromisoformat(re.search(r"\((\S+Z)\)", message).group(1))
    assert datetime(2026, 11, 27, 18, 30, tzinfo=UTC) <= named < datetime(2026, 11, 29, 18, 30, tzinfo=UTC), message
    assert "+05:30" in message


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (f"/v1/metrics/nope?{H_RANGE}", 404, "unknown_metric"),
        ("/nope", 404, "not_found"),
        ("/v1/metric", 404, "not_found"),
        (f"/v1/metrics/revenue?grain=minute&{H_RANGE}", 400, "bad_grain"),
        (f"/v1/metrics/stickiness?grain=hour&{H_RANGE}", 400, "bad_grain"),
        (f"/v1/metrics/revenue?grain=week&{H_RANGE}", 400, "bad_range"),
        ("/v1/metrics/revenue?grain=week&start=2026-11-24&end=2026-12-08", 400, "bad_range"),
        ("/v1/metrics/revenue?grain=month&start=2026-11-02&end=2026-12-01", 400, "bad_range"),
        (f"/v1/metrics/revenue?tz=Mars/Olympus&{H_RANGE}", 400, "bad_timezone"),
        (f"/v1/metrics/revenue?tz=../../etc/passwd&{H_RANGE}", 400, "bad_timezone"),
        ("/v1/metrics/revenue?grain=day&tz=Asia/Kolkata&start=2026-11-27&end=2026-11-28", 400, "unsupported_timezone"),
        (f"/v1/metrics/revenue?window=7&{H_RANGE}", 400, "bad_window"),
        ("/v1/metrics/revenue?window=7d&start=2026-11-01&end=2026-11-09", 400, "range_too_large"),
        (f"/v1/metrics/revenue?window=91d&{H_RANGE}", 400, "bad_window"),
        (f"/v1/metrics/revenue?window=0d&{H_RANGE}", 400, "bad_window"),
        ("/v1/metrics/stickiness?grain=day&window=7d&start=2026-11-27&end=2026-11-28", 400, "bad_window"),
        (f"/v1/metrics/revenue?limit=3&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue?group_by=country&limit=0&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue?group_by=country&limit=x&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue?grain=&{H_RANGE}", 400, "bad_grain"),
        ("/v1/metrics/revenue?end=2026-11-27T12:00:00Z", 400, "bad_parameter"),
        ("/v1/metrics/revenue?start=2026-11-27T10:00:00Z", 400, "bad_parameter"),
        ("/v1/metrics/revenue?start=yesterday&end=2026-11-27T12:00:00Z", 400, "bad_parameter"),
        ("/v1/metrics/revenue?start=2026-11-27T10:30:00Z&end=2026-11-27T12:00:00Z", 400, "bad_range"),
        ("/v1/metrics/revenue?start=2026-11-27T10:00:00Z&end=2026-11-27T11:00:01Z", 400, "bad_range"),
        ("/v1/metrics/revenue?grain=day&start=2026-11-27T10:00:00Z&end=2026-11-29", 400, "bad_range"),
        ("/v1/metrics/revenue?start=2026-11-27T12:00:00Z&end=2026-11-27T12:00:00Z", 400, "bad_range"),
        ("/v1/metrics/revenue?start=2026-11-28&end=2026-11-27", 400, "bad_range"),
        ("/v1/metrics/revenue?start=2026-01-01&end=2026-12-31", 400, "range_too_large"),
        ("/v1/metrics/revenue?grain=day&start=2020-01-01&end=2026-01-01", 400, "range_too_large"),
        (f"/v1/metrics/revenue?event_type=purchase&{H_RANGE}", 400, "unknown_dimension"),
        (f"/v1/metrics/sessions?country=US&{H_RANGE}", 400, "unknown_dimension"),
        (f"/v1/metrics/revenue?colour=red&{H_RANGE}", 400, "unknown_dimension"),
        (f"/v1/metrics/revenue?group_by=event_type&{H_RANGE}", 400, "unknown_dimension"),
        (f"/v1/metrics/revenue?platform=web&platform=ios&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue?platform=&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue?group_by=&{H_RANGE}", 400, "bad_parameter"),
    ],
)
def test_errors_have_stable_codes(api: TestClient, url: str, status: int, code: str) -> None:
    response = api.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text


def test_error_messages_name_the_parameter(api: TestClient) -> None:
    missing = api.get("/v1/metrics/revenue?end=2026-11-27T12:00:00Z").json()
    assert "start" in missing["error"]["message"]
    unknown = api.get(f"/v1/metrics/revenue?colour=red&{H_RANGE}").json()
    assert "colour" in unknown["error"]["message"]


def test_unexpected_error_is_a_generic_500(
    settings: Settings, redis_client: redis.Redis, api_layout: KeyLayout
) -> None:
    redis_client.hset(api_layout.pointer(), hour_field(CORRUPT_HOUR), "not json")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as api:
            response = api.get("/v1/metrics/events?start=2026-11-20T00:00Z&end=2026-11-20T01:00Z")
    finally:  # the module's other tests share the data set: leave it as published
        redis_client.hdel(api_layout.pointer(), hour_field(CORRUPT_HOUR))
    assert response.status_code == 500
    assert list(response.json()) == ["error"]
    assert response.json()["error"]["code"] == "internal"
    assert "Traceback" not in response.text and "JSONDecodeError" not in response.text
