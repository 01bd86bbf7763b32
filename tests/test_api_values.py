"""GET /v1/metrics/{name}/values/{dimension}: the values a dimension took over a range, with counts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support import api as support
from tests.support.api import (
    EVENTS_A,
    EVENTS_B,
    EVENTS_D,
    H_RANGE,
    HOURS_10_TO_12,
    HOURS_10_TO_14,
    dimension_values,
    within,
)

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


def test_values_of_a_dimension_sorted_with_counts(api: TestClient) -> None:
    events = [*EVENTS_A, *EVENTS_B, *EVENTS_D]
    expected = {c: sum(e.country == c for e in events) for c in {e.country for e in events}}
    assert dimension_values(api, "events", "country", **HOURS_10_TO_14) == sorted(expected.items())


def test_values_of_a_sum_over_days_and_edge_hours(api: TestClient) -> None:
    # Whole day 27 (hours A, B, D) plus 28 00:00-06:00 (hour E): android only there.
    got = dimension_values(api, "revenue", "platform", start="2026-11-27", end="2026-11-28T06:00:00Z")
    assert got == [("android", 100.0), ("ios", 20.5), ("web", 22.75)]
    day_27 = dimension_values(api, "revenue", "platform", start="2026-11-27", end="2026-11-28")
    assert [v for v, _ in day_27] == ["ios", "web"]


def test_values_of_a_distinct_metric_are_unions(api: TestClient) -> None:
    got = dict(dimension_values(api, "active_users", "platform", **HOURS_10_TO_12))
    for platform in ("web", "ios"):
        exact = len({e.user_id for e in [*EVENTS_A, *EVENTS_B] if e.platform == platform})
        assert within(got[platform], exact), (platform, got[platform], exact)


def test_values_of_a_ratio_count_its_denominator(api: TestClient) -> None:
    ratio = dimension_values(api, "avg_order_value", "platform", **HOURS_10_TO_12)
    assert ratio == dimension_values(api, "orders", "platform", **HOURS_10_TO_12)
    assert dict(ratio) == {"ios": 1, "web": 3}


def test_values_where_nothing_is_computed_are_empty(api: TestClient) -> None:
    assert dimension_values(api, "events", "country", start="2026-11-29", end="2026-11-30") == []


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (f"/v1/metrics/nope/values/country?{H_RANGE}", 404, "unknown_metric"),
        (f"/v1/metrics/revenue/values/event_type?{H_RANGE}", 400, "unknown_dimension"),
        (f"/v1/metrics/revenue/values/country?grain=day&{H_RANGE}", 400, "bad_parameter"),
        (f"/v1/metrics/revenue/values/country?country=US&{H_RANGE}", 400, "bad_parameter"),
        ("/v1/metrics/revenue/values/country?start=2026-11-27", 400, "bad_parameter"),
        ("/v1/metrics/revenue/values/country?start=2026-11-28&end=2026-11-27", 400, "bad_range"),
        ("/v1/metrics/revenue/values/country?start=2020-01-01&end=2026-01-01", 400, "range_too_large"),
        (
            "/v1/metrics/revenue/values/country?tz=Asia/Kolkata&start=2026-11-27&end=2026-11-28",
            400,
            "unsupported_timezone",
        ),
    ],
)
def test_values_errors(api: TestClient, url: str, status: int, code: str) -> None:
    response = api.get(url)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
