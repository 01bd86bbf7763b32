"""Time zones, week/month grains, rolling windows, top-N and stickiness on real pipeline data.

Fifteen days of sample events (crossing New York's 2026-03-08 DST change) go
through the real Spark job and publisher into Redis; the API's answers are
compared with exact counts computed by pandas over the same raw files:
additive metrics exactly, distinct counts within 3%.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.app.generate import generate
from tally.core.layout import hours_between
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support import reference

pytestmark = pytest.mark.e2e
SPEC = load_spec(DEFAULT_SPEC_PATH)
FIRST, DAYS = date(2026, 2, 26), 15
START = datetime(2026, 2, 26, tzinfo=UTC)
END = START + timedelta(days=DAYS)
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory, redis_server):
    """(API client, valid events as pandas) for 15 published days."""
    import redis

    data_dir = tmp_path_factory.mktemp("windows-data")
    generate(data_dir, FIRST, days=DAYS, events_per_hour=60, seed=3, progress=False)
    hours = list(hours_between(START, END))
    report = run_hours(spark, data_dir, SPEC, hours)
    assert report.ok and len(report.computed) == len(hours)
    layout = KeyLayout(f"{TEST_PREFIX}-windows-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(redis_server)
    publish_hours(client, layout, data_dir, SPEC, hours, PublishOptions(superseded_ttl=60))
    events = reference.valid_events(data_dir, hours)
    events["time"] = pd.to_datetime(events["event_time"], utc=True)
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix)
    try:
        with TestClient(create_app(settings)) as api:
            yield api, events
    finally:
        delete_prefix(client, layout)


def get(api: TestClient, metric: str, **params) -> dict:
    response = api.get(f"/v1/metrics/{metric}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def between(events: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return events[(events["time"] >= start) & (events["time"] < end)]


def close(actual: float, exact: float, tolerance: float) -> bool:
    return abs(actual - exact) <= tolerance * max(exact, 1)


def test_local_days_in_new_york_across_dst(world):
    api, events = world
    body = get(api, "active_users", grain="day", tz="America/New_York", start="2026-03-01", end="2026-03-12")
    points = body["series"][0]["points"]
    assert points[7]["ts"] == "2026-03-08T00:00:00-05:00" and points[8]["ts"] == "2026-03-09T00:00:00-04:00"
    orders = get(api, "orders", grain="day", tz="America/New_York", start="2026-03-01", end="2026-03-12")
    for point, order_point in zip(points, orders["series"][0]["points"], strict=True):
        local_start = datetime.fromisoformat(point["ts"])
        local_end = datetime.combine(local_start.date() + timedelta(days=1), datetime.min.time(), NY)
        day = between(events, local_start, local_end)
        assert close(point["value"], day["user_id"].nunique(), 0.03), (point, day["user_id"].nunique())
        assert order_point["value"] == int((day["event_type"] == "purchase").sum())


@pytest.mark.parametrize(
    ("grain", "start", "end"),
    [("week", "2026-03-02", "2026-03-16"), ("month", "2026-02-01", "2026-04-01"), ("day", "2026-02-26", "2026-03-13")],
)
def test_distinct_unions_over_grains_match_exact_counts(world, grain, start, end):
    api, events = world
    users = get(api, "active_users", grain=grain, start=start, end=end)["series"][0]["points"]
    revenue = get(api, "revenue", grain=grain, start=start, end=end)["series"][0]["points"]
    edges = [datetime.fromisoformat(p["ts"].replace("Z", "+00:00")) for p in users]
    edges.append(datetime.fromisoformat(end).replace(tzinfo=UTC))
    for point, money, (a, b) in zip(users, revenue, itertools.pairwise(edges), strict=True):
        bucket = between(events, a, b)
        assert close(point["value"], bucket["user_id"].nunique(), 0.03), (grain, a, point)
        expected = bucket.loc[bucket["event_type"] == "purchase", "amount"].sum()
        assert money["value"] == pytest.approx(expected, rel=1e-9)


def test_rolling_seven_day_actives(world):
    api, events = world
    body = get(api, "active_users", grain="day", window="7d", start="2026-03-04", end="2026-03-13")
    assert body["window"] == "7d"
    for point in body["series"][0]["points"]:
        end = datetime.fromisoformat(point["ts"].replace("Z", "+00:00")) + timedelta(days=1)
        exact = between(events, end - timedelta(days=7), end)["user_id"].nunique()
        assert close(point["value"], exact, 0.03), (point, exact)


def test_stickiness_is_daily_over_thirty_day_actives(world):
    api, events = world
    body = get(api, "stickiness", grain="day", start="2026-03-10", end="2026-03-13")
    for point in body["series"][0]["points"]:
        day_start = datetime.fromisoformat(point["ts"].replace("Z", "+00:00"))
        day_end = day_start + timedelta(days=1)
        dau = between(events, day_start, day_end)["user_id"].nunique()
        mau = between(events, day_end - timedelta(days=30), day_end)["user_id"].nunique()
        assert close(point["value"], dau / mau, 0.05), (point, dau / mau)


def test_top_n_plus_other_adds_up_and_unions(world):
    api, events = world
    params = {"grain": "day", "start": "2026-03-01", "end": "2026-03-05", "group_by": "country", "limit": "3"}
    grouped = get(api, "revenue", **params)["series"]
    total = get(api, "revenue", grain="day", start="2026-03-01", end="2026-03-05")["series"][0]["points"]
    assert len(grouped) == 4 and grouped[-1]["other"] and grouped[-1]["labels"] == {"country": "other"}
    purchases = between(events, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC))
    purchases = purchases[purchases["event_type"] == "purchase"]
    ranking = purchases.groupby("country")["amount"].sum().sort_values(ascending=False)
    assert [s["labels"]["country"] for s in grouped[:3]] == list(ranking.index[:3])
    for i, point in enumerate(total):
        assert sum(s["points"][i]["value"] for s in grouped) == pytest.approx(point["value"], rel=1e-9)

    users = get(api, "active_users", **params)["series"]
    top = [s["labels"]["country"] for s in users[:3]]
    window = between(events, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC))
    for i, point in enumerate(users[-1]["points"]):
        day = window[window["time"].dt.day == 1 + i]
        exact_other = day.loc[~day["country"].isin(top), "user_id"].nunique()
        assert close(point["value"], exact_other, 0.03), (i, point, exact_other)
    # The union of the rest is not the sum of the rest's per-country counts.
    first_day = window[(window["time"].dt.day == 1) & ~window["country"].isin(top)]
    assert users[-1]["points"][0]["value"] <= first_day.groupby("country")["user_id"].nunique().sum()
