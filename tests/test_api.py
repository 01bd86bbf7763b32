"""Tests of the read-only API (dashboard_api) against the real test Redis (TALLY_TEST_REDIS_URL).

Data goes in through the real publisher (cache.publish.publish_builds) under a key
prefix unique to this run, and only that prefix is deleted afterwards. Rollups are
built here from a small list of events by a reference implementation of the spec,
and every expected value is derived from those events (or written out literally),
never through dashboard_api.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import datasketches
import pytest
import redis
from fastapi.testclient import TestClient

from cache.keys import KeyLayout, hour_field, slice_id
from cache.publish import HourBuild, build_id, publish_builds
from dashboard_api import calendar as cal
from dashboard_api import create_app
from dashboard_api import query as q
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import Kind, load_spec
from tests.conftest import TEST_PREFIX, TEST_REDIS_URL, delete_prefix
from tests.test_spec import DEFAULT_NAMES

REDIS_URL = TEST_REDIS_URL
SPEC = load_spec(DEFAULT_SPEC_PATH)
LG_K = 14


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


# --- the data set -----------------------------------------------------------------

HOUR_A = at(27, 10)
HOUR_B = at(27, 11)
HOUR_C = at(27, 12)  # never published: unknown
HOUR_D = at(27, 13)  # published, one view: no purchases at all
HOUR_E = at(28, 5)
HOUR_R = at(26, 8)  # republished by a test
CORRUPT_HOUR = at(20, 0)

# Publish times (published_at is formatted by the publisher as below).
T_R = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
T_AB = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
T_D = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
T_E = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
T_REPUBLISH = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
AS_OF_AB = "2026-11-27T12:05:00.000000Z"
AS_OF_D = "2026-11-27T14:05:00.000000Z"
AS_OF_E = "2026-11-28T06:05:00.000000Z"
AS_OF_REPUBLISH = "2026-11-28T07:00:00.000000Z"


@dataclass(frozen=True)
class Event:
    hour: datetime
    user_id: str
    event_type: str
    country: str
    platform: str
    amount: float = 0.0

    @property
    def session_id(self) -> str:
        return f"s-{self.user_id}-{self.hour:%H}"


def views(hour: datetime, first: int, last: int) -> list[Event]:
    """One view per user u{first}..u{last-1}, countries and platforms cycling."""
    return [
        Event(hour, f"u{i:04d}", "view", ("US", "DE", "FR")[i % 3], ("web", "ios")[i % 2]) for i in range(first, last)
    ]


EVENTS_A = [
    *views(HOUR_A, 0, 3000),
    Event(HOUR_A, "u0001", "purchase", "US", "web", 10.0),
    Event(HOUR_A, "u0002", "purchase", "DE", "ios", 20.5),
    Event(HOUR_A, "u0003", "purchase", "US", "web", 5.25),
    Event(HOUR_A, "u0004", "signup", "US", "web"),
]
# Users u1000..u2999 were also active in hour A: a day must not count them twice.
EVENTS_B = [*views(HOUR_B, 1000, 4000), Event(HOUR_B, "u0001", "purchase", "US", "web", 7.5)]
EVENTS_D = [Event(HOUR_D, "u0005", "view", "US", "web")]
EVENTS_E = [Event(HOUR_E, "u0007", "purchase", "FR", "android", 100.0)]
EVENTS_R_V1 = [Event(HOUR_R, "u0009", "signup", "US", "web")]
EVENTS_R_V2 = [*EVENTS_R_V1, Event(HOUR_R, "u0010", "signup", "US", "web")]


def rollup(hour: datetime, events: list[Event]) -> HourBuild:
    """Reference rollup: every stored metric, every slice with events, as the Spark job does."""
    values: dict[str, dict[str, float]] = {}
    sketches: dict[str, dict[str, bytes]] = {}
    for metric in SPEC.stored:
        matching = [e for e in events if all(getattr(e, col) in allowed for col, allowed in metric.filter)]
        for dims in metric.slice_dimension_sets():
            groups: dict[str, list[Event]] = defaultdict(list)
            for e in matching:
                groups[slice_id({d: getattr(e, d) for d in dims})].append(e)
            for slice_text, group in groups.items():
                if metric.kind is Kind.COUNT:
                    values.setdefault(metric.name, {})[slice_text] = float(len(group))
                elif metric.kind is Kind.SUM:
                    values.setdefault(metric.name, {})[slice_text] = math.fsum(e.amount for e in group)
                else:
                    sketch = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)
                    for e in group:
                        sketch.update(getattr(e, metric.field))
                    values.setdefault(metric.name, {})[slice_text] = float(round(sketch.get_estimate()))
                    sketches.setdefault(metric.name, {})[slice_text] = sketch.serialize_compact()
    return HourBuild(hour, build_id(values, sketches), values, sketches)


BUILD_A, BUILD_B, BUILD_D = rollup(HOUR_A, EVENTS_A), rollup(HOUR_B, EVENTS_B), rollup(HOUR_D, EVENTS_D)
BUILD_E, BUILD_R_V1 = rollup(HOUR_E, EVENTS_E), rollup(HOUR_R, EVENTS_R_V1)


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="module")
def layout(redis_client: redis.Redis) -> Iterator[KeyLayout]:
    """A fresh prefix holding the published data set; its keys are deleted afterwards."""
    layout = KeyLayout(f"{TEST_PREFIX}-api-{uuid.uuid4().hex}")
    for builds, now in (
        ([BUILD_R_V1], T_R),
        ([BUILD_A, BUILD_B], T_AB),
        ([BUILD_D], T_D),
        ([BUILD_E], T_E),
    ):
        publish_builds(redis_client, layout, builds, superseded_ttl=60, now=now)
    yield layout
    keys = list(redis_client.scan_iter(match=layout.all_keys_pattern(), count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="module")
def settings(layout: KeyLayout) -> Settings:
    return Settings(redis_url=REDIS_URL, redis_prefix=layout.prefix)


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


HOURS_10_TO_14 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T14:00:00Z"}
HOURS_10_TO_12 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T12:00:00Z"}
HOUR_10 = {"start": "2026-11-27T10:00:00Z", "end": "2026-11-27T11:00:00Z"}


def series(api: TestClient, metric: str, **params: str) -> dict:
    response = api.get(f"/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def values(body: dict, index: int = 0) -> list:
    return [point["value"] for point in body["series"][index]["points"]]


def within(actual: float, exact: float, tolerance: float = 0.02) -> bool:
    return abs(actual - exact) <= tolerance * exact


def hour_ts(day: int, hours: range) -> list[str]:
    return [f"2026-11-{day}T{h:02d}:00:00Z" for h in hours]


# --- catalogue --------------------------------------------------------------------


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
    }
    stickiness = body["metrics"][-1]
    assert stickiness["grains"] == ["day"] and stickiness["max_window_days"] == 0


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


def test_cards_come_from_the_spec_in_its_order(layout: KeyLayout, tmp_path: Path) -> None:
    spec_path = tmp_path / "rides.yaml"
    spec_path.write_text(RIDES_SPEC)
    settings = Settings(redis_url=REDIS_URL, redis_prefix=layout.prefix, spec_path=spec_path)
    with TestClient(create_app(settings)) as rides:
        body = rides.get("/v1/metrics").json()
    assert [m["name"] for m in body["metrics"]] == ["trips", "fares", "riders"]
    assert body["cards"] == ["riders", "fares"]


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


H_RANGE = "start=2026-11-27T10:00:00Z&end=2026-11-27T12:00:00Z"
KOLKATA_DAY = "tz=Asia/Kolkata&start=2026-11-27&end=2026-11-28"


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


def dimension_values(api: TestClient, metric: str, dimension: str, **params: str) -> list[tuple[str, object]]:
    response = api.get(f"/v1/metrics/{metric}/values/{dimension}", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["metric"], body["dimension"]) == (metric, dimension)
    return [(v["value"], v["count"]) for v in body["values"]]


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


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/metrics/revenue", "/health", "/nope"])
def test_only_get_and_head_are_allowed(api: TestClient, method: str, path: str) -> None:
    response = api.request(method, path, json={"x": 1})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("url", ["/v1/metrics", f"/v1/metrics/revenue?{H_RANGE}", "/health", "/openapi.json"])
def test_head_is_get_without_body(api: TestClient, url: str) -> None:
    response = api.head(url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("application/json")


def asgi_request(app: object, method: str, path: str) -> list[dict]:
    """The raw ASGI messages the app sends (TestClient itself drops HEAD bodies)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return sent


@pytest.mark.parametrize("path", ["/v1/metrics", "/openapi.json"])
def test_head_sends_no_body_bytes(settings: Settings, path: str) -> None:
    app = create_app(settings)
    get = asgi_request(app, "GET", path)
    head = asgi_request(app, "HEAD", path)
    assert head[0]["status"] == 200
    assert dict(head[0]["headers"])[b"content-length"] == dict(get[0]["headers"])[b"content-length"]
    assert b"".join(m.get("body", b"") for m in get[1:])
    assert b"".join(m.get("body", b"") for m in head[1:]) == b""


def test_head_keeps_error_status(api: TestClient) -> None:
    response = api.head("/v1/metrics/nope?start=2026-11-27&end=2026-11-28")
    assert response.status_code == 404 and response.content == b""


def test_docs_and_openapi(api: TestClient) -> None:
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    openapi = api.get("/openapi.json")
    assert openapi.status_code == 200
    paths = openapi.json()["paths"]
    assert set(paths) >= {"/v1/metrics", "/v1/metrics/{name}", "/health"}
    ok = paths["/v1/metrics/{name}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/SeriesResponse")


def test_unexpected_error_is_a_generic_500(settings: Settings, redis_client: redis.Redis, layout: KeyLayout) -> None:
    redis_client.hset(layout.pointer(), hour_field(CORRUPT_HOUR), "not json")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as api:
            response = api.get("/v1/metrics/events?start=2026-11-20T00:00Z&end=2026-11-20T01:00Z")
    finally:  # the module's other tests read every pointer (GET /v1/runs without a range)
        redis_client.hdel(layout.pointer(), hour_field(CORRUPT_HOUR))
    assert response.status_code == 500
    assert list(response.json()) == ["error"]
    assert response.json()["error"]["code"] == "internal"
    assert "Traceback" not in response.text and "JSONDecodeError" not in response.text


def test_runs_without_a_range_are_the_newest_hours(api: TestClient) -> None:
    body = api.get("/v1/runs").json()
    expected = [HOUR_R, HOUR_A, HOUR_B, HOUR_D, HOUR_E]  # every computed hour: fewer than 24
    assert [run["hour"] for run in body["runs"]] == [h.strftime("%Y-%m-%dT%H:00:00Z") for h in expected]
    only_start = api.get("/v1/runs", params={"start": "2026-11-27T10:00Z"})
    assert only_start.status_code == 400 and "'end'" in only_start.json()["error"]["message"]


def test_runs_without_a_range_stop_at_a_day(redis_client: redis.Redis) -> None:
    layout = KeyLayout(f"{TEST_PREFIX}-api-runs-{uuid.uuid4().hex}")
    hours = [at(20, 0) + timedelta(hours=i) for i in range(30)]
    builds = []
    for i, hour in enumerate(hours):
        counts = {"events": {"_": float(i)}}
        builds.append(HourBuild(hour, build_id(counts, {}), counts, {}, {"rows_read": i}))
    publish_builds(redis_client, layout, builds, superseded_ttl=60)
    try:
        with TestClient(create_app(Settings(redis_url=REDIS_URL, redis_prefix=layout.prefix))) as api:
            runs = api.get("/v1/runs").json()["runs"]
        assert [r["hour"] for r in runs] == [h.strftime("%Y-%m-%dT%H:00:00Z") for h in hours[-24:]]
        assert [r["rows_read"] for r in runs] == list(range(6, 30))
    finally:
        delete_prefix(redis_client, layout)


# --- health and Redis outages ----------------------------------------------------


def test_health_reports_newest_hour(api: TestClient, redis_client: redis.Redis, layout: KeyLayout) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    body = response.json()
    # The data set's newest hour ended days ago: stale against the default limit, still 200.
    assert body["status"] == "stale" and body["redis"] == "ok" and body["max_lag_seconds"] == 7200
    assert body["lag_seconds"] > 7200
    assert body["newest_hour"] == "2026-11-28T05:00:00Z"
    assert body["published_at"] == redis_client.hget(layout.meta(), "published_at").decode()
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


class SwitchableProxy:
    """A TCP proxy to Redis that can drop every connection, to stage an outage."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        test_redis = urlsplit(TEST_REDIS_URL)
        target = target or (test_redis.hostname or "127.0.0.1", test_redis.port or 6379)
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                downstream.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def set_down(self) -> None:
        self.up = False
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.set_down()
        self.server.close()


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


# --- republishing -----------------------------------------------------------------


def test_republish_switches_value_and_keeps_old_build(
    api: TestClient, redis_client: redis.Redis, layout: KeyLayout
) -> None:
    params = {"start": "2026-11-26T08:00:00Z", "end": "2026-11-26T09:00:00Z"}
    assert values(series(api, "signups", **params)) == [1]
    new_build = rollup(HOUR_R, EVENTS_R_V2)
    assert new_build.build != BUILD_R_V1.build
    publish_builds(redis_client, layout, [new_build], superseded_ttl=60, now=T_REPUBLISH)
    after = series(api, "signups", **params)
    assert values(after) == [2] and after["as_of"] == AS_OF_REPUBLISH
    hour = hour_field(HOUR_R)
    old = BUILD_R_V1.build
    old_keys = [layout.manifest(old, hour), layout.values(old, hour, "signups")]
    for key in old_keys:  # kept for rollback, not expired
        assert redis_client.ttl(key) == -1
    assert redis_client.lindex(layout.history(hour), 1) == old.encode()
    assert redis_client.ttl(layout.values(new_build.build, hour, "signups")) == -1


# --- pure query functions -----------------------------------------------------------


def hll(*items: str) -> bytes:
    sketch = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)
    for item in items:
        sketch.update(item)
    return sketch.serialize_compact()


NY = ZoneInfo("America/New_York")


def test_is_aligned() -> None:
    assert cal.is_aligned(at(27, 10), "hour", cal.UTC_ZONE)
    assert not cal.is_aligned(at(27, 10) + timedelta(minutes=1), "hour", cal.UTC_ZONE)
    assert cal.is_aligned(at(27, 0), "day", cal.UTC_ZONE)
    assert not cal.is_aligned(at(27, 10), "day", cal.UTC_ZONE)
    assert cal.is_aligned(at(27, 5), "day", NY) and not cal.is_aligned(at(27, 0), "day", NY)
    assert cal.is_aligned(datetime(2026, 11, 23, tzinfo=UTC), "week", cal.UTC_ZONE)  # a Monday
    assert not cal.is_aligned(datetime(2026, 11, 24, tzinfo=UTC), "week", cal.UTC_ZONE)
    assert cal.is_aligned(datetime(2026, 11, 1, tzinfo=UTC), "month", cal.UTC_ZONE)


def test_buckets_follow_the_local_calendar() -> None:
    hours = cal.bucket_bounds(at(27, 22), at(28, 1), "hour", cal.UTC_ZONE)
    assert [start for start, _ in hours] == [at(27, 22), at(27, 23), at(28, 0)]
    days = cal.bucket_bounds(at(27, 0), at(29, 0), "day", cal.UTC_ZONE)
    assert days == [(at(27, 0), at(28, 0)), (at(28, 0), at(29, 0))]
    # New York's spring-forward day has 23 hours, its fall-back day 25.
    spring = cal.bucket_bounds(datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC), "day", NY)
    assert [(end - start).total_seconds() / 3600 for start, end in spring] == [23]
    fall = cal.bucket_bounds(datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 5, tzinfo=UTC), "day", NY)
    assert [(end - start).total_seconds() / 3600 for start, end in fall] == [25]
    months = cal.bucket_bounds(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "month", cal.UTC_ZONE
    )
    assert [end.date().isoformat() for _, end in months] == ["2026-02-01", "2026-03-01", "2026-04-01"]
    assert cal.format_ts(datetime(2026, 3, 8, 5, tzinfo=UTC), NY) == "2026-03-08T00:00:00-05:00"
    assert cal.format_ts(at(27, 5), cal.UTC_ZONE) == "2026-11-27T05:00:00Z"


def test_fractional_offsets_are_found() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    assert cal.first_fractional_offset(kolkata, at(27, 0), at(28, 0)) == at(27, 0)
    assert cal.first_fractional_offset(NY, at(27, 0), at(28, 0)) is None


def test_span_splits_into_whole_days_and_edge_hours() -> None:
    days, hours = q.Span(at(26, 22), at(28, 2)).split()
    assert days == [date(2026, 11, 27)]
    assert hours == [at(26, 22), at(26, 23), at(28, 0), at(28, 1)]
    assert q.Span(at(27, 1), at(27, 3)).split() == ([], [at(27, 1), at(27, 2)])


def test_evaluator_sums_hours_and_consistent_days() -> None:
    read = q.HashRead("revenue", "values")
    snapshot = q.Snapshot(
        published_at={at(26, 23): "p", at(27, 0): "p", at(27, 5): "p", at(28, 0): "p"},
        hours={read: {at(26, 23): {"_": 1.0}, at(28, 0): {"_": 4.0, "platform=web": 4.0}}},
        days={read: {date(2026, 11, 27): {"_": 10.0}}},
    )
    evaluator = q.Evaluator(SPEC, snapshot, [read], cal.UTC_ZONE)
    revenue = SPEC.get("revenue")
    assert evaluator.value(revenue, q.Span(at(26, 23), at(28, 1)), ["_"]) == 15.0
    assert evaluator.value(revenue, q.Span(at(28, 0), at(28, 1)), ["platform=web"]) == 4.0
    assert evaluator.value(revenue, q.Span(at(26, 23), at(27, 0)), ["platform=web"]) == 0  # computed, no slice
    assert evaluator.value(revenue, q.Span(at(26, 0), at(26, 5)), ["_"]) is None  # nothing computed


def test_evaluator_unions_sketches_never_sums() -> None:
    read = q.HashRead("active_users", "sketches")
    snapshot = q.Snapshot(
        published_at={at(27, 1): "p", at(27, 2): "p", at(27, 3): "p"},
        hours={
            read: {
                at(27, 1): {"_": hll(*(f"u{i}" for i in range(100)))},
                at(27, 2): {"_": hll(*(f"u{i}" for i in range(50, 150)))},
                at(27, 3): {},
            }
        },
    )
    evaluator = q.Evaluator(SPEC, snapshot, [read], cal.UTC_ZONE)
    users = SPEC.get("active_users")
    assert evaluator.value(users, q.Span(at(27, 1), at(27, 4)), ["_"]) == 150
    assert evaluator.value(users, q.Span(at(27, 3), at(27, 4)), ["_"]) == 0
    assert evaluator.value(users, q.Span(at(27, 5), at(27, 6)), ["_"]) is None


def test_divide_and_present() -> None:
    assert q.divide(6, 4) == 1.5
    assert q.divide(6, 0) is None
    assert q.divide(None, 4) is None and q.divide(6, None) is None
    assert q.present(None, Kind.SUM) is None
    assert type(q.present(3.0, Kind.COUNT)) is int and q.present(2.6, Kind.COUNT_DISTINCT) == 3
    assert type(q.present(3.0, Kind.SUM)) is float


def test_group_values_matches_exact_slice_shape() -> None:
    slices = [
        "_",
        "platform=web",
        "platform=ios",
        "country=US",
        "country=US,platform=ios",
        "country=DE,platform=web",
    ]
    assert q.group_values(slices, {}, "platform") == ["ios", "web"]
    assert q.group_values(slices, {"country": "US"}, "platform") == ["ios"]
    assert q.group_values(slices, {"country": "JP"}, "platform") == []
    assert q.group_values(["platform=a%2Cb"], {}, "platform") == ["a,b"]
    # A value seen only with an extra dimension is not a series of this shape.
    assert q.group_values(["platform=web", "country=US,platform=ios"], {}, "platform") == ["web"]


def test_plan_reads_follows_kind_grain_and_windows() -> None:
    def request(metric: str, grain: str, end: datetime, **extra: object) -> q.SeriesRequest:
        return q.SeriesRequest(metric=SPEC.get(metric), grain=grain, tz=cal.UTC_ZONE, start=at(27, 0), end=end, **extra)

    aov = q.plan_reads(SPEC, request("avg_order_value", "day", at(28, 0)))
    assert set(aov.hours) == {q.HashRead("revenue", "values"), q.HashRead("orders", "values")}
    assert aov.days[q.HashRead("revenue", "values")] == {date(2026, 11, 27)}
    hourly = q.plan_reads(SPEC, request("conversion_rate", "hour", at(27, 3)))
    assert set(hourly.hours) == {q.HashRead("purchasers", "values"), q.HashRead("active_users", "values")}
    assert hourly.slices == ("_",)
    daily = q.plan_reads(SPEC, request("conversion_rate", "day", at(28, 0)))
    assert set(daily.days) == {q.HashRead("purchasers", "sketches"), q.HashRead("active_users", "sketches")}
    windowed = q.plan_reads(SPEC, request("active_users", "day", at(28, 0), window_days=7))
    assert windowed.start == at(21, 0) and len(windowed.days[q.HashRead("active_users", "sketches")]) == 7
    sticky = q.plan_reads(SPEC, request("stickiness", "day", at(28, 0)))
    assert sticky.start == datetime(2026, 10, 29, tzinfo=UTC)  # the 30-day denominator
    grouped = q.plan_reads(SPEC, request("revenue", "hour", at(27, 2), group_by="country", limit=2))
    assert grouped.slices is None


def test_build_series_ratio_of_sums() -> None:
    aov = SPEC.get("avg_order_value")
    request = q.SeriesRequest(metric=aov, grain="day", tz=cal.UTC_ZONE, start=at(27, 0), end=at(29, 0))
    plan = q.plan_reads(SPEC, request)
    revenue, orders = q.HashRead("revenue", "values"), q.HashRead("orders", "values")
    snapshot = q.Snapshot(
        hours={
            revenue: {at(27, 1): {"_": 10.0}, at(27, 2): {"_": 30.0}},
            orders: {at(27, 1): {"_": 1.0}, at(27, 2): {"_": 3.0}},
        },
        published_at={
            at(27, 1): "2026-11-27T02:00:00.000000Z",
            at(27, 2): "2026-11-27T03:00:00.000000Z",
        },
    )
    out = q.build_series(SPEC, request, plan, snapshot)
    assert out == [
        q.SeriesData(
            labels={}, points=[(at(27, 0), 10.0), (at(28, 0), None)], complete=[False, False], revised=[False, False]
        )
    ]
    assert snapshot.as_of == "2026-11-27T03:00:00.000000Z"


def test_unencoded_plus_offset_is_understood(api: TestClient) -> None:
    # Clients often forget to encode "+": "…T00:00:00+00:00" then arrives as "…T00:00:00 00:00".
    raw = api.get("/v1/metrics/events?start=2026-11-27T00:00:00+00:00&end=2026-11-27T02:00:00+00:00")
    assert raw.status_code == 200, raw.text
    assert [p["ts"] for p in raw.json()["series"][0]["points"]] == ["2026-11-27T00:00:00Z", "2026-11-27T01:00:00Z"]
