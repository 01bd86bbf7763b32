"""The value_not_seen warnings of a series whose filter value no stored slice of the range holds."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import api as support
from tests.support.api import HOUR_10, HOURS_10_TO_12, HOURS_10_TO_14, series, values

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


def test_misspelt_filter_value_answers_zero_with_a_warning(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_14, country="us")
    assert values(body) == [0, 0, None, 0]  # answered as before: nothing matches
    [warning] = body["warnings"]
    assert {k: warning[k] for k in ("code", "dimension", "value")} == {
        "code": "value_not_seen",
        "dimension": "country",
        "value": "us",
    }
    assert "US" in warning["message"] and "/v1/metrics/revenue/values/country" in warning["message"]


def test_seen_values_give_no_warning(api: TestClient) -> None:
    assert series(api, "revenue", **HOURS_10_TO_14, country="US")["warnings"] == []
    # Both values occur in the range, only never together: a true zero, no warning.
    body = series(api, "events", **HOUR_10, event_type="signup", platform="ios")
    assert values(body) == [0]
    assert body["warnings"] == []
    assert series(api, "revenue", **HOURS_10_TO_14)["warnings"] == []


def test_value_seen_only_outside_the_range_warns(api: TestClient) -> None:
    # android occurs on the 28th only (hour E).
    inside = series(api, "revenue", **HOURS_10_TO_14, platform="android")
    assert [(w["dimension"], w["value"]) for w in inside["warnings"]] == [("platform", "android")]
    wider = series(api, "revenue", grain="day", start="2026-11-27", end="2026-11-29", platform="android")
    assert values(wider) == [0, 100.0]
    assert wider["warnings"] == []


def test_grouped_request_warns_about_its_filter(api: TestClient) -> None:
    body = series(api, "events", **HOURS_10_TO_12, country="JP", platform="tv", group_by="event_type")
    assert body["series"] == []
    assert [(w["dimension"], w["value"]) for w in body["warnings"]] == [("country", "JP"), ("platform", "tv")]


def test_no_warning_where_nothing_is_computed(api: TestClient) -> None:
    body = series(api, "revenue", start="2026-11-29T00:00:00Z", end="2026-11-29T02:00:00Z", country="us")
    assert values(body) == [None, None]
    assert body["warnings"] == []
