"""GET /v1/metrics/{name} against the published data set: grains, kinds, ratios, filters and group_by."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support import api as support
from tests.support.api import (
    AS_OF_AB,
    AS_OF_D,
    AS_OF_E,
    BUILD_A,
    BUILD_B,
    EVENTS_A,
    EVENTS_B,
    EVENTS_D,
    HOUR_10,
    HOURS_10_TO_12,
    HOURS_10_TO_14,
    hour_ts,
    series,
    values,
    within,
)

# The data set's fixtures, module-scoped: this module publishes its own copy.
api, api_layout, settings = support.api, support.api_layout, support.settings


# --- hour grain -------------------------------------------------------------------


def test_hour_series_values_zero_and_null(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_14)
    assert body["metric"] == "revenue" and body["grain"] == "hour"
    assert body["start"] == "2026-11-27T10:00:00Z" and body["end"] == "2026-11-27T14:00:00Z"
    assert len(body["series"]) == 1 and body["series"][0]["labels"] == {}
    assert [p["ts"] for p in body["series"][0]["points"]] == hour_ts(27, range(10, 14))
    # A: 10 + 20.5 + 5.25; B: 7.5; C never computed; D computed without any purchase.
    assert values(body) == [35.75, 7.5, None, 0]
    assert all(isinstance(v, float) for v in values(body) if v is not None)
    assert body["as_of"] == AS_OF_D


def test_hour_series_filter_missing_slice_is_zero(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_14, platform="ios")
    assert body["series"][0]["labels"] == {"platform": "ios"}
    assert values(body) == [20.5, 0, None, 0]


def test_counts_are_integers(api: TestClient) -> None:
    body = series(api, "orders", **HOURS_10_TO_14)
    assert values(body) == [3, 1, None, 0]
    assert all(type(v) is int for v in values(body) if v is not None)


def test_every_bucket_once_in_order_and_as_of(api: TestClient) -> None:
    body = series(api, "events", start="2026-11-27", end="2026-11-28")
    assert [p["ts"] for p in body["series"][0]["points"]] == hour_ts(27, range(24))
    expected = [None] * 24
    for hour, events in ((10, EVENTS_A), (11, EVENTS_B), (13, EVENTS_D)):
        expected[hour] = len(events)
    assert values(body) == expected
    only_ab = series(api, "events", **HOURS_10_TO_12)
    assert only_ab["as_of"] == AS_OF_AB
    nothing = series(api, "events", start="2026-11-29T00:00:00Z", end="2026-11-29T03:00:00Z")
    assert values(nothing) == [None, None, None] and nothing["as_of"] is None


def test_hour_distinct_is_the_stored_estimate(api: TestClient) -> None:
    body = series(api, "active_users", **HOURS_10_TO_12)
    stored = [BUILD_A.values["active_users"]["_"], BUILD_B.values["active_users"]["_"]]
    assert values(body) == [int(v) for v in stored]
    assert within(values(body)[0], len({e.user_id for e in EVENTS_A}))
    assert within(values(body)[1], len({e.user_id for e in EVENTS_B}))


# --- day grain --------------------------------------------------------------------


def test_day_grain_sums_computed_hours(api: TestClient) -> None:
    revenue = series(api, "revenue", grain="day", start="2026-11-27", end="2026-11-30")
    assert [p["ts"] for p in revenue["series"][0]["points"]] == [
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
        "2026-11-29T00:00:00Z",
    ]
    assert values(revenue) == [35.75 + 7.5, 100.0, None]
    assert revenue["as_of"] == AS_OF_E
    orders = series(api, "orders", grain="day", start="2026-11-27", end="2026-11-30")
    assert values(orders) == [4, 1, None]
    assert all(type(v) is int for v in values(orders) if v is not None)


def test_day_bounds_accept_offsets_and_naive_times(api: TestClient) -> None:
    body = series(api, "orders", grain="day", start="2026-11-27T01:00:00+01:00", end="2026-11-28T00:00:00")
    assert body["start"] == "2026-11-27T00:00:00Z" and values(body) == [4]


def test_day_distinct_is_a_union_not_a_sum(api: TestClient) -> None:
    day = series(api, "active_users", grain="day", start="2026-11-27", end="2026-11-28")
    exact = len({e.user_id for e in EVENTS_A + EVENTS_B + EVENTS_D})
    assert exact == 4000
    assert type(values(day)[0]) is int
    assert within(values(day)[0], exact)
    hourly = series(api, "active_users", start="2026-11-27", end="2026-11-28")
    # Summing the hours would count u1000..u2999 twice (about 6000).
    assert sum(v for v in values(hourly) if v is not None) > 1.4 * exact


def test_day_distinct_grouped_by_platform(api: TestClient) -> None:
    day = series(api, "active_users", grain="day", start="2026-11-27", end="2026-11-28", group_by="platform")
    assert [s["labels"] for s in day["series"]] == [{"platform": "ios"}, {"platform": "web"}]
    for index, platform in enumerate(("ios", "web")):
        exact = len({e.user_id for e in EVENTS_A + EVENTS_B + EVENTS_D if e.platform == platform})
        assert within(values(day, index)[0], exact)


def test_ratio_is_computed_from_summed_parts(api: TestClient) -> None:
    day = series(api, "avg_order_value", grain="day", start="2026-11-27", end="2026-11-30")
    assert values(day) == [pytest.approx((35.75 + 7.5) / 4), pytest.approx(100.0), None]
    mean_of_hourly_ratios = ((35.75 / 3) + (7.5 / 1)) / 2
    assert values(day)[0] != pytest.approx(mean_of_hourly_ratios)
    hourly = series(api, "avg_order_value", **HOURS_10_TO_14)
    # Hour D is computed but has no orders: denominator 0 -> null.
    assert values(hourly) == [pytest.approx(35.75 / 3), pytest.approx(7.5), None, None]


def test_distinct_ratio_uses_day_unions(api: TestClient) -> None:
    day = series(api, "conversion_rate", grain="day", start="2026-11-27", end="2026-11-28")
    purchasers = {e.user_id for e in EVENTS_A + EVENTS_B if e.event_type == "purchase"}
    active = {e.user_id for e in EVENTS_A + EVENTS_B + EVENTS_D}
    assert within(values(day)[0], len(purchasers) / len(active))


# --- filters and group_by ---------------------------------------------------------


def test_group_by_one_series_per_value_sorted(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_12, group_by="platform")
    assert [s["labels"] for s in body["series"]] == [{"platform": "ios"}, {"platform": "web"}]
    assert values(body, 0) == [20.5, 0]
    assert values(body, 1) == [15.25, 7.5]


def test_group_by_with_filter(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_12, country="US", group_by="platform")
    assert [s["labels"] for s in body["series"]] == [{"country": "US", "platform": "web"}]
    assert values(body) == [15.25, 7.5]


def test_group_by_counts_per_value(api: TestClient) -> None:
    body = series(api, "events", **HOUR_10, group_by="event_type")
    assert [s["labels"]["event_type"] for s in body["series"]] == ["purchase", "signup", "view"]
    assert [values(body, i)[0] for i in range(3)] == [3, 1, 3000]


def test_group_by_without_values_is_empty(api: TestClient) -> None:
    body = series(api, "revenue", **HOURS_10_TO_12, country="JP", group_by="platform")
    assert body["series"] == []
    uncomputed = series(api, "revenue", start="2026-11-29T00:00:00Z", end="2026-11-29T02:00:00Z", group_by="platform")
    assert uncomputed["series"] == []


def test_several_filters(api: TestClient) -> None:
    body = series(
        api,
        "events",
        **HOUR_10,
        event_type="purchase",
        platform="web",
    )
    assert body["series"][0]["labels"] == {"event_type": "purchase", "platform": "web"}
    web_purchases = [e for e in EVENTS_A if e.event_type == "purchase" and e.platform == "web"]
    assert values(body) == [len(web_purchases)]


def test_unencoded_plus_offset_is_understood(api: TestClient) -> None:
    # Clients often forget to encode "+": "…T00:00:00+00:00" then arrives as "…T00:00:00 00:00".
    raw = api.get("/v1/metrics/events?start=2026-11-27T00:00:00+00:00&end=2026-11-27T02:00:00+00:00")
    assert raw.status_code == 200, raw.text
    assert [p["ts"] for p in raw.json()["series"][0]["points"]] == ["2026-11-27T00:00:00Z", "2026-11-27T01:00:00Z"]
