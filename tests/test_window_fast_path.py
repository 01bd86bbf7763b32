"""Rolling windows over dense day sketches take the register-array path; it must agree
with plain sketch unions and with exact counts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import datasketches
import pytest
from fastapi.testclient import TestClient

from cache.builds import HourBuild, build_id
from cache.keys import slice_id
from cache.options import PublishOptions
from cache.publish import publish_builds
from dashboard_api import create_app
from dashboard_api.evaluate import Evaluator
from dashboard_api.params import parse_series_query
from dashboard_api.plan import HashRead, plan_reads, point_spans
from dashboard_api.store import read_snapshot
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec

SPEC = load_spec(DEFAULT_SPEC_PATH)
FIRST = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 12
HOURS_PER_DAY = (3, 15)  # two busy hours a day are enough for dense sketches


@pytest.fixture
def published(redis_client, layout, redis_server):
    rng = random.Random(5)
    users_by_day: dict[int, set[int]] = {}
    builds = []
    for day in range(DAYS):
        for hour in HOURS_PER_DAY:
            users = rng.sample(range(40_000), 3_000)
            users_by_day.setdefault(day, set()).update(users)
            sketch = datasketches.hll_sketch(SPEC.sketch_lg_k, datasketches.tgt_hll_type.HLL_8)
            for user in users:
                sketch.update(f"u{user}")
            values = {"active_users": {slice_id({}): float(round(sketch.get_estimate()))}}
            sketches = {"active_users": {slice_id({}): sketch.serialize_compact()}}
            when = FIRST + timedelta(days=day, hours=hour)
            builds.append(HourBuild(when, build_id(values, sketches), values, sketches, {}))
    publish_builds(redis_client, layout, builds, PublishOptions(superseded_ttl=60), spec=SPEC)
    return Settings(redis_url=redis_server, redis_prefix=layout.prefix), users_by_day


def test_fast_windows_equal_plain_unions_and_exact_counts(published, redis_client, layout):
    settings, users_by_day = published
    items = [("grain", "day"), ("window", "5d"), ("start", "2026-10-05"), ("end", "2026-10-13")]
    request = parse_series_query(SPEC.get("active_users"), items, {"hour": 2232, "day": 400})
    plan = plan_reads(SPEC, request)
    snapshot = read_snapshot(redis_client, layout, plan)
    assert len(snapshot.days[HashRead("active_users", "sketches")]) == 12  # day aggregates were used
    evaluator = Evaluator(SPEC, snapshot, [*plan.hours, *plan.days], request.tz)
    spans = point_spans(request)
    fast = evaluator._sliding_unions(SPEC.get("active_users"), spans, ["_"])
    assert fast is not None  # dense days: the register path ran
    plain = [evaluator.value(SPEC.get("active_users"), span, ["_"]) for span in spans]
    assert [round(v.get_estimate()) for v in fast] == plain

    with TestClient(create_app(settings)) as api:
        body = api.get("/v1/metrics/active_users", params=dict(items)).json()
    for index, point in enumerate(body["series"][0]["points"]):
        last_day = 4 + index  # 2026-10-05 is day 4
        exact = len(set().union(*(users_by_day[d] for d in range(last_day - 4, last_day + 1))))
        assert point["value"] == plain[index]
        assert abs(point["value"] - exact) <= 0.02 * exact
