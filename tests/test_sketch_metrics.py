"""Sketch-native metrics end to end: raw files -> Spark -> Redis -> HTTP, against exact answers from pandas.

A table of our own (tests/support/cohort_data.py) over three weeks that cross the
end of daylight saving time in New York. Checked, as issue 16 asks:
quantiles within 2% normalized rank error for q in {0.5, 0.9, 0.95, 0.99} at hour,
day and week grains and with a 7-day window; min and max exact; retention and
funnel values within 5% (or 3 ids) of exact set intersections for cohorts of at
least 500 ids; bounds containing the exact value in at least 90% of points.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from cache.builds import read_hour_build
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.core.settings import Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support import cohort_data
from tests.support.cohort_data import HOURS, NEW_YORK, as_timestamp, id_sets, rank_bounds
from tests.support.specs import write_spec

UTC_ZONE = ZoneInfo("UTC")
QUANTILES = (0.5, 0.9, 0.95, 0.99)
RANK_TOLERANCE = 0.02
SET_TOLERANCE, SET_SLACK, MIN_COHORT = 0.05, 3, 500
START, END = "2026-10-26", "2026-11-16"  # three whole weeks, in any zone


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[dict[str, Any]]:
    """The table computed by Spark, published to Redis and served; with the exact rows beside it."""
    data_dir = tmp_path_factory.mktemp("sketch-data")
    cohort_data.write_tables(data_dir)
    path = write_spec(data_dir / "app.yaml", cohort_data.SPEC)
    spec = load_spec(path)
    report = run_hours(spark, data_dir, spec, HOURS)
    assert report.ok and not report.missing, (report.failed, report.missing)
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-sketch-{os.getpid()}")
    publish_hours(client, layout, data_dir, spec, HOURS, PublishOptions(superseded_ttl=60))
    settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, spec_path=path, data_dir=data_dir)
    with TestClient(create_app(settings)) as api:
        yield {"api": api, "rows": cohort_data.events(data_dir), "data_dir": data_dir}
    delete_prefix(client, layout)
    client.close()


def get(api: TestClient, path: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def points(body: dict[str, Any]) -> list[dict[str, Any]]:
    (series,) = body["series"]
    return series["points"]


def payments(rows: pd.DataFrame) -> pd.DataFrame:
    paid = rows[rows["act"] == "pay"]
    return paid.assign(amount=paid["cents"] / 100.0)


# --- quantiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grain", "tz", "window"),
    [
        ("hour", UTC_ZONE, None),
        ("day", UTC_ZONE, None),
        ("day", NEW_YORK, None),
        ("week", NEW_YORK, None),
        ("day", NEW_YORK, 7),
    ],
)
@pytest.mark.parametrize("metric", ["pay_value", "latency_p"])
def test_quantiles_are_within_two_percent_rank_of_the_exact_distribution(world, metric, grain, tz, window) -> None:
    rows = world["rows"]
    numbers = (
        payments(rows).rename(columns={"amount": "number"})
        if metric == "pay_value"
        else rows.assign(number=rows["latency"])
    )
    params: dict[str, Any] = {"grain": grain, "tz": tz.key}
    if grain == "hour":  # a day of hours across New York's midnight
        params.update(start="2026-11-01T00:00:00Z", end="2026-11-02T00:00:00Z")
    else:
        params.update(start=START, end=END)
    if window:
        params["window"] = f"{window}d"
    checked = 0
    for q in QUANTILES:
        body = get(world["api"], f"/v1/metrics/{metric}", q=q, **params)
        assert body["q"] == q
        for point in points(body):
            start = as_timestamp(point["ts"])
            end = _bucket_end(start, grain, tz)
            first = _local_days_before(end, window, tz) if window else start
            inside = numbers[(numbers["at"] >= first) & (numbers["at"] < end)]["number"].to_numpy()
            if len(inside) == 0:
                assert point["value"] is None
                continue
            below, at_or_below = rank_bounds(inside, point["value"])
            assert below - RANK_TOLERANCE <= q <= at_or_below + RANK_TOLERANCE, (point, q, below, at_or_below)
            checked += 1
    assert checked >= 3 * len(QUANTILES)  # three weeks at least


def _local_days_before(instant: pd.Timestamp, days: int, tz: ZoneInfo) -> pd.Timestamp:
    """The same local wall-clock time ``days`` calendar days earlier (a window's start), in UTC."""
    wall = instant.tz_convert(tz.key).tz_localize(None) - pd.Timedelta(days=days)
    return wall.tz_localize(tz.key).tz_convert("UTC")


def _bucket_end(start: pd.Timestamp, grain: str, tz: ZoneInfo) -> pd.Timestamp:
    if grain == "hour":
        return start + pd.Timedelta(hours=1)
    return _local_days_before(start, -(1 if grain == "day" else 7), tz)


def test_the_default_q_is_the_specs_and_group_by_limit_ranks_by_the_whole_range(world) -> None:
    api, paid = world["api"], payments(world["rows"])
    default = get(api, "/v1/metrics/pay_value", grain="week", start=START, end=END)
    assert default["q"] == 0.9
    assert points(default) == points(get(api, "/v1/metrics/pay_value", grain="week", start=START, end=END, q="0.9"))
    body = get(api, "/v1/metrics/pay_value", grain="week", start=START, end=END, group_by="region", limit="1", q="0.5")
    top, other = body["series"]
    medians = paid.groupby("region")["amount"].median()
    assert top["labels"]["region"] == medians.idxmax() and other["other"] is True
    # `other` merges the rest's sketches: its median is the median of the other regions' payments together.
    rest = paid[paid["region"] != medians.idxmax()]
    for point in other["points"]:
        start = as_timestamp(point["ts"])
        inside = rest[(rest["at"] >= start) & (rest["at"] < start + pd.Timedelta(days=7))]["amount"].to_numpy()
        below, at_or_below = rank_bounds(inside, point["value"])
        assert below - RANK_TOLERANCE <= 0.5 <= at_or_below + RANK_TOLERANCE


def test_min_and_max_are_exact_in_every_bucket_and_region(world) -> None:
    api, paid = world["api"], payments(world["rows"])
    for name, column, pick in (("cheapest", "cents", "min"), ("priciest", "amount", "max")):
        body = get(
            api, f"/v1/metrics/{name}", grain="day", tz="America/New_York", start=START, end=END, group_by="region"
        )
        assert len(body["series"]) == 3
        for series in body["series"]:
            mine = paid[paid["region"] == series["labels"]["region"]]
            for point in series["points"]:
                start = as_timestamp(point["ts"])
                inside = mine[(mine["at"] >= start) & (mine["at"] < _bucket_end(start, "day", NEW_YORK))]
                expected = getattr(inside[column], pick)() if len(inside) else None
                assert point["value"] == (None if expected is None else pytest.approx(float(expected), abs=0))


def test_a_computed_hour_with_no_matching_row_has_no_minimum(world) -> None:
    api, hour, end = world["api"], "2026-11-02T16:00:00Z", "2026-11-02T17:00:00Z"  # a computed hour
    body = get(api, "/v1/metrics/cheapest", grain="hour", start=hour, end=end, region="west")  # no such region
    assert points(body) == [{"ts": hour, "value": None, "complete": True, "revised": False}]
    assert body["warnings"][0]["code"] == "value_not_seen"
    paid = payments(world["rows"])
    exact = paid[paid["hour"] == as_timestamp(hour)]["cents"].min()
    assert points(get(api, "/v1/metrics/cheapest", grain="hour", start=hour, end=end))[0]["value"] == float(exact)


def test_a_ratio_of_a_max_and_a_quantile_divides_the_two(world) -> None:
    api = world["api"]
    params = {"grain": "week", "start": START, "end": END}
    spread = points(get(api, "/v1/metrics/spread", **params))
    top = points(get(api, "/v1/metrics/priciest", **params))
    p90 = points(get(api, "/v1/metrics/pay_value", **params))
    for s, t, p in zip(spread, top, p90, strict=True):
        assert s["value"] == pytest.approx(t["value"] / p["value"], rel=1e-9)


def test_a_rerun_of_the_same_input_in_another_batch_is_the_same_build(world, spark) -> None:
    # The fixture computed all 84 hours in one batch; these two alone now. Sketch bytes depend on
    # the order rows arrive in (and KLL compaction flips coins): the builds must not.
    spec, data_dir = load_spec(world["data_dir"] / "app.yaml"), world["data_dir"]
    hours = HOURS[40:42]  # hours whose latency sketches hold more values than k: compaction ran
    before = [read_hour_build(data_dir, hour, spec) for hour in hours]
    assert all(b.values["latency_p"]["_"] > 200 for b in before)
    report = run_hours(spark, data_dir, spec, hours)
    assert report.ok
    after = [read_hour_build(data_dir, hour, spec) for hour in hours]
    assert [b.build for b in after] == [b.build for b in before]
    exact = [m.name for m in spec.stored if not m.has_sketch]
    assert [{m: b.values[m] for m in exact} for b in after] == [{m: b.values[m] for m in exact} for b in before]


# --- retention and funnels -------------------------------------------------------------------


def _close(value: int | None, exact: int) -> bool:
    return value is not None and abs(value - exact) <= max(SET_SLACK, SET_TOLERANCE * exact)


@pytest.mark.parametrize(("grain", "periods"), [("week", 2), ("day", 9)])
def test_retention_matches_exact_set_intersections_across_the_dst_change(world, grain, periods) -> None:
    rows, tz = world["rows"], NEW_YORK
    body = get(
        world["api"],
        "/v1/retention",
        cohort="joiners",
        returning="members",
        grain=grain,
        start=START,
        end=END,
        periods=periods,
        tz=tz.key,
    )
    assert (body["cohort"], body["returning"], body["grain"], body["tz"], body["periods"]) == (
        "joiners",
        "members",
        grain,
        tz.key,
        periods,
    )
    cohorts = id_sets(rows[rows["act"] == "join"], grain, tz)
    active = id_sets(rows, grain, tz)
    large = 0
    for entry in body["cohorts"]:
        start = as_timestamp(entry["start"])
        cohort = cohorts.get(start, set())
        assert _close(entry["size"], len(cohort)), (entry["start"], entry["size"], len(cohort))
        assert len(entry["periods"]) == periods + 1
        for period in entry["periods"]:
            returning = active.get(as_timestamp(period["start"]))
            if returning is None:  # beyond the data: nothing computed
                assert period["value"] is None and period["rate"] is None and period["complete"] is False
                continue
            exact = len(cohort & returning)
            if len(cohort) >= MIN_COHORT or grain == "day":
                assert _close(period["value"], exact), (entry["start"], period, exact)
            if period["offset"] == 0 and entry["size"]:  # joiners are members that bucket
                assert period["rate"] == pytest.approx(1.0, abs=SET_TOLERANCE)
            if period["value"] and entry["size"]:
                assert period["rate"] == round(period["value"] / entry["size"], 4)
        large += len(cohort) >= MIN_COHORT
    assert grain == "day" or large >= 2
    # New York's weeks start at its midnights: EDT before the change, EST after.
    if grain == "week":
        assert [c["start"] for c in body["cohorts"]] == [
            "2026-10-26T00:00:00-04:00",
            "2026-11-02T00:00:00-05:00",
            "2026-11-09T00:00:00-05:00",
        ]


def test_funnel_steps_are_exact_intersections_per_local_day(world) -> None:
    rows, tz = world["rows"], NEW_YORK
    body = get(
        world["api"], "/v1/funnel", steps="browsers,basketers,payers", grain="day", start=START, end=END, tz=tz.key
    )
    assert body["steps"] == ["browsers", "basketers", "payers"] and body["grain"] == "day"
    sets = [id_sets(rows[rows["act"] == act], "day", tz) for act in ("browse", "basket", "pay")]
    large = 0
    for bucket in body["buckets"]:
        start = as_timestamp(bucket["start"])
        common: set[str] | None = None
        values = []
        for step, found in zip(bucket["steps"], sets, strict=True):
            common = found.get(start, set()) if common is None else common & found.get(start, set())
            assert _close(step["value"], len(common)), (bucket["start"], step, len(common))
            values.append(step["value"])
        first, *_ = bucket["steps"]
        assert first["rate_from_previous"] is None and first["rate_from_first"] == 1.0
        for previous, step in zip(bucket["steps"], bucket["steps"][1:], strict=False):
            assert step["rate_from_previous"] == round(step["value"] / previous["value"], 4)
            assert step["rate_from_first"] == round(step["value"] / first["value"], 4)
        large += values[0] >= MIN_COHORT
    assert large >= 10
    # The day of the change has 25 hours in New York; its bucket starts at EDT midnight.
    assert "2026-11-01T00:00:00-04:00" in [b["start"] for b in body["buckets"]]


def test_bounds_contain_the_exact_value_in_at_least_90_percent_of_points(world) -> None:
    api, rows, tz = world["api"], world["rows"], NEW_YORK
    hits: list[bool] = []

    def record(entry: dict[str, Any], exact: int) -> None:
        assert entry["lower"] <= entry["value"] <= entry["upper"]
        hits.append(entry["lower"] <= exact <= entry["upper"])

    members = id_sets(rows, "day", tz)
    for name in ("members_small", "members_hll"):
        body = get(api, f"/v1/metrics/{name}", grain="day", tz=tz.key, start=START, end=END, bounds="true")
        for point in points(body):
            record(point, len(members[as_timestamp(point["ts"])]))
    funnel = get(
        api, "/v1/funnel", steps="members_small,payers", grain="day", tz=tz.key, start=START, end=END, bounds="true"
    )
    paying = id_sets(rows[rows["act"] == "pay"], "day", tz)
    for bucket in funnel["buckets"]:
        start = as_timestamp(bucket["start"])
        record(bucket["steps"][0], len(members[start]))
        record(bucket["steps"][1], len(members[start] & paying.get(start, set())))
    retention = get(
        api,
        "/v1/retention",
        cohort="joiners",
        returning="members_small",
        grain="week",
        tz=tz.key,
        start=START,
        end=END,
        periods=1,
        bounds="true",
    )
    weekly, joins = id_sets(rows, "week", tz), id_sets(rows[rows["act"] == "join"], "week", tz)
    for entry in retention["cohorts"]:
        for period in entry["periods"]:
            if period["value"] is not None:
                exact = joins.get(as_timestamp(entry["start"]), set()) & weekly[as_timestamp(period["start"])]
                record(period, len(exact))
    assert len(hits) >= 80
    assert sum(hits) / len(hits) >= 0.9, f"{sum(hits)} of {len(hits)}"
    # The small sketch is estimating (its bounds are not a point): the check is not vacuous.
    small = points(get(api, "/v1/metrics/members_small", grain="week", start=START, end=END, bounds="true"))
    assert all(p["upper"] - p["lower"] > 0.05 * p["value"] for p in small)


def test_incompatible_and_mixed_metrics_are_refused(world) -> None:
    api = world["api"]
    cases = [
        ({"cohort": "members_hll", "returning": "members"}, "incompatible_metric", "members_hll"),
        ({"cohort": "cheapest", "returning": "members"}, "incompatible_metric", "cheapest"),
        ({"cohort": "joiners", "returning": "visits"}, "mixed_id_spaces", "'evt'"),
    ]
    for params, code, named in cases:
        response = api.get("/v1/retention", params={**params, "grain": "week", "start": START, "end": END})
        assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
        assert named in response.json()["error"]["message"]
    response = api.get("/v1/funnel", params={"steps": "browsers,visits", "start": START, "end": END})
    assert response.status_code == 400 and response.json()["error"]["code"] == "mixed_id_spaces"
