"""The sketch benchmark's data (bench/sketch_latency.py) and P7's bytes per sketch family (bench/suite.py).

Two days of the benchmark's hourly builds are published to Redis; the real app's
funnel and retention answers are checked against exact set intersections of the
users the generator drew, so the latency figures are measured over data that
answers correctly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import datasketches
import pytest
import redis
from fastapi.testclient import TestClient

from bench.sketch_latency import THETA_METRICS, Traffic, build_of
from bench.suite import _bytes_by_family, _memory_of
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix

DAY = datetime(2026, 11, 2, tzinfo=UTC)
SPEC = load_spec(DEFAULT_SPEC_PATH)


@pytest.fixture(scope="module")
def published(redis_server: str) -> Iterator[tuple[KeyLayout, list[dict[str, set[int]]], list]]:
    """Two days of builds under a fresh prefix; the users per step of every hour, and the builds."""
    layout = KeyLayout(f"{TEST_PREFIX}-bench-sketch")
    traffic = Traffic(random.Random(5))
    hours, builds = [], []
    for h in range(48):
        steps = traffic.hour()
        hours.append({name: set(users) for name, users in steps.items()})
        builds.append(build_of(DAY + timedelta(hours=h), steps, traffic.rng, SPEC))
    with redis.Redis.from_url(redis_server) as client:
        for day in range(2):
            publish_builds(
                client, layout, builds[day * 24 : day * 24 + 24], PublishOptions(superseded_ttl=60), spec=SPEC
            )
        yield layout, hours, builds
        delete_prefix(client, layout)


@pytest.fixture(scope="module")
def api(redis_server: str, published: tuple) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_server, redis_prefix=published[0].prefix, hour_retention_days=0)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_builds_hold_the_sketches_the_spec_stores(published: tuple) -> None:
    _, hours, builds = published
    build = builds[0]
    for name in THETA_METRICS:
        # The default spec's theta metrics keep the total and platform: the total and 3 platforms.
        assert len(build.sketches[name]) == 1 + 3
        total = datasketches.compact_theta_sketch.deserialize(build.sketches[name]["_"])
        assert round(total.get_estimate()) == len(hours[0][name]) == build.values[name]["_"]  # exact mode
    # The quantile metric declares slices [[country], [platform]]; its value is n.
    kll = datasketches.kll_doubles_sketch.deserialize(build.sketches["order_value_p95"]["_"])
    assert len(build.sketches["order_value_p95"]) == 1 + 10 + 3
    assert kll.n == build.values["order_value_p95"]["_"] == 200 and kll.get_min_value() > 0
    # Funnel steps are nested, mostly: most buyers carted and most carters viewed.
    steps = hours[0]
    assert len(steps["buyers"] & steps["carters"]) > 0.8 * len(steps["buyers"])
    assert len(steps["carters"] & steps["viewers"]) > 0.8 * len(steps["carters"])
    assert steps["new_users"] <= steps["returning_users"]


def test_an_hourly_funnel_equals_exact_intersections(api: TestClient, published: tuple) -> None:
    _, hours, _ = published
    # An hour's step sets are below theta's 4,096 entries (exact mode): intersections are exact.
    body = api.get(
        "/v1/funnel",
        params={
            "steps": "viewers,carters,buyers",
            "grain": "hour",
            "start": "2026-11-02T00:00Z",
            "end": "2026-11-02T06:00Z",
        },
    ).json()
    assert len(body["buckets"]) == 6
    for bucket, steps in zip(body["buckets"], hours, strict=False):
        viewed = steps["viewers"]
        expected = [len(viewed), len(viewed & steps["carters"]), len(viewed & steps["carters"] & steps["buyers"])]
        assert [s["value"] for s in bucket["steps"]] == expected


def test_a_daily_retention_table_matches_exact_intersections(api: TestClient, published: tuple) -> None:
    _, hours, _ = published
    day_sets = [
        {name: set().union(*(h[name] for h in hours[d * 24 : d * 24 + 24])) for name in hours[0]} for d in (0, 1)
    ]
    body = api.get(
        "/v1/retention",
        params={
            "cohort": "new_users",
            "returning": "returning_users",
            "grain": "day",
            "start": "2026-11-02",
            "end": "2026-11-03",
            "periods": "1",
            "bounds": "true",
        },
    ).json()
    (cohort,) = body["cohorts"]
    signups = day_sets[0]["new_users"]
    assert cohort["size"] == len(signups)  # 1,440 signups a day: exact mode
    for period, day in zip(cohort["periods"], day_sets, strict=True):
        exact = len(signups & day["returning_users"])
        # A day's returning users (~34,000) are past exact mode (theta ~0.12): the intersection keeps
        # ~170 of the cohort's hashes, ~8% standard error, so the check is the sketch's 95% bounds.
        assert period["lower"] <= exact <= period["upper"]
        assert abs(period["value"] - exact) <= 0.25 * exact


def test_p7_bytes_per_family_add_up_and_tell_theta_from_kll(redis_client: redis.Redis, published: tuple) -> None:
    layout = published[0]
    families = _bytes_by_family(redis_client, layout, SPEC)
    assert sum(families.values()) == _memory_of(redis_client, layout)
    # No HLL metric is published: its bytes are only the day hashes' @builds fields every stored metric gets.
    assert 0 < families["hll"] < families["kll"] < families["theta"]
    assert families["exact"] > 0 and families["unowned"] > 0
