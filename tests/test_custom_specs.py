"""Tally on tables of our own, described in the spec alone, end to end, checked against pandas.

Two specs (tests/support/specs.py) differ from the sample `events` table in every
way the spec allows: folder layouts, epoch time units, an id or none, column
names and types, SQL dimensions, `where`, rules, two sources and a cross-source
ratio. Spark computes, Redis serves, HTTP answers; pandas recomputes from the raw
files. Counts and sums are exact, distinct counts within 3%, invalid rows are
counted per declared reason, and the same holds through `airflow dags test`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.core.layout import format_hour
from tally.core.settings import Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_PREFIX, TEST_REDIS_URL, delete_prefix
from tests.support import specs
from tests.support.specs import HOURS, T0

DISTINCT_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """(data dir, visits root, rides spec, shop spec): the raw tables of both specs, written once."""
    data_dir = tmp_path_factory.mktemp("data")
    visits_root = tmp_path_factory.mktemp("elsewhere")  # the visits table lives outside TALLY_DATA_DIR
    specs.write_tables(data_dir, visits_root, HOURS)
    specs_dir = tmp_path_factory.mktemp("specs")
    rides = specs.write_spec(specs_dir / "rides.yaml", specs.RIDES_SPEC)
    shop = specs.write_spec(specs_dir / "shop.yaml", specs.shop_spec(visits_root))
    return data_dir, visits_root, rides, shop


@pytest.fixture(scope="module")
def computed(spark, tables, redis_server: str):
    """Both specs computed by Spark and published to Redis, each under a prefix of its own."""
    data_dir, _, rides_path, shop_path = tables
    client = redis.Redis.from_url(redis_server)
    out = {}
    for name, path in (("rides", rides_path), ("shop", shop_path)):
        spec = load_spec(path)
        report = run_hours(spark, data_dir, spec, HOURS)
        assert report.ok and not report.missing, (report.failed, report.missing)
        layout = KeyLayout(f"{TEST_PREFIX}-{name}-{os.getpid()}")
        publish_hours(client, layout, data_dir, spec, HOURS, PublishOptions(superseded_ttl=60))
        settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, spec_path=path, data_dir=data_dir)
        out[name] = (settings, report)
    yield out
    for settings, _ in out.values():
        delete_prefix(client, KeyLayout(settings.redis_prefix))
    client.close()


def hourly(api: TestClient, metric: str, **params: str) -> list[dict]:
    query = {"grain": "hour", "start": format_hour(HOURS[0]), "end": format_hour(HOURS[-1] + timedelta(hours=1))}
    response = api.get(f"/v1/metrics/{metric}", params={**query, **params})
    assert response.status_code == 200, response.text
    return response.json()["series"]


def values(series: list[dict]) -> list:
    (only,) = series
    return [p["value"] for p in only["points"]]


def within(actual: float, expected: float) -> bool:
    return abs(actual - expected) <= DISTINCT_TOLERANCE * expected


def test_rides_match_pandas_hour_by_hour(tables, computed):
    data_dir = tables[0]
    settings, report = computed["rides"]
    expected = [specs.rides_frame(data_dir, hour) for hour in HOURS]
    answers = [specs.rides_metrics(valid) for valid, _ in expected]
    with TestClient(create_app(settings)) as api:
        assert values(hourly(api, "trips")) == [a["trips"] for a in answers]
        assert values(hourly(api, "trips", city="BER")) == [a["trips_by_city"]["BER"] for a in answers]
        assert values(hourly(api, "trips", vehicle_kind="bike", sharing="shared")) == [
            a["trips_bike_shared"] for a in answers
        ]
        assert values(hourly(api, "trips", vehicle_kind="unknown")) == [a["trips_unknown_vehicle"] for a in answers]
        assert values(hourly(api, "fare_total")) == pytest.approx(
            [round(a["fare_total"], 2) for a in answers], abs=0.005
        )
        assert values(hourly(api, "fare_total", city="BER", vehicle_kind="car")) == pytest.approx(
            [a["fare_total_ber_car"] for a in answers], abs=0.005
        )
        assert values(hourly(api, "long_trips")) == [a["long_trips"] for a in answers]
        assert values(hourly(api, "shared_fares")) == pytest.approx([a["shared_fares"] for a in answers], abs=0.005)
        for got, answer in zip(values(hourly(api, "riders")), answers, strict=True):
            assert within(got, answer["riders"])
        ratio = values(hourly(api, "fare_per_trip"))
        assert ratio == pytest.approx([a["fare_total"] / a["trips"] for a in answers], rel=1e-9)
        by_city = {s["labels"]["city"] for s in hourly(api, "trips", group_by="city")}
        assert by_city == {city for a in answers for city in a["trips_by_city"]} == {"BER", "PAR", "LIS"}
        # A day is the union of its hours: distinct riders are not summed.
        day = api.get("/v1/metrics/riders", params={"grain": "day", "start": "2026-10-05", "end": "2026-10-06"}).json()[
            "series"
        ][0]["points"][0]
        all_rides = [valid for valid, _ in expected]
        import pandas as pd

        assert within(day["value"], pd.concat(all_rides)["rider"].nunique())
    for hour, (_, reasons) in zip(HOURS, expected, strict=True):
        stats = report.computed[format_hour(hour)]
        assert stats["source"] == "rides"
        assert stats["invalid_by_reason"] == reasons
        assert stats["duplicate_rows"] == 0  # no id: every valid row counts


def test_shop_two_sources_and_a_cross_source_ratio_match_pandas(tables, computed):
    data_dir, visits_root = tables[0], tables[1]
    settings, report = computed["shop"]
    frames = [(specs.visits_frame(visits_root, h), specs.orders_frame(data_dir, h)) for h in HOURS]
    answers = [specs.shop_metrics(v, o) for (v, _), (o, _) in frames]
    with TestClient(create_app(settings)) as api:
        assert values(hourly(api, "visits")) == [a["visits"] for a in answers]
        assert values(hourly(api, "visits", market="de")) == [a["visits_de"] for a in answers]
        assert values(hourly(api, "visits", market="unknown")) == [a["visits_unknown"] for a in answers]
        assert values(hourly(api, "bounces")) == [a["bounces"] for a in answers]
        assert values(hourly(api, "paid_orders")) == [a["paid_orders"] for a in answers]
        assert values(hourly(api, "paid_orders", market="us")) == [a["paid_orders_us"] for a in answers]
        assert values(hourly(api, "paid_orders", market="us", status="shipped")) == [
            a["paid_orders_us_shipped"] for a in answers
        ]
        assert values(hourly(api, "order_revenue")) == pytest.approx([a["order_revenue"] for a in answers], abs=0.005)
        for got, answer in zip(values(hourly(api, "visitors")), answers, strict=True):
            assert within(got, answer["visitors"])
        for got, answer in zip(values(hourly(api, "buyers")), answers, strict=True):
            assert within(got, answer["buyers"])
        conversion = values(hourly(api, "visit_conversion"))
        assert conversion == pytest.approx([a["paid_orders"] / a["visits"] for a in answers], rel=1e-9)
        de = values(hourly(api, "visit_conversion", market="de"))
        de_orders = [
            int((o["status"].isin(["paid", "shipped"]) & (o["market"] == "de")).sum()) for (_, _), (o, _) in frames
        ]
        assert de == pytest.approx([n / a["visits_de"] for n, a in zip(de_orders, answers, strict=True)], rel=1e-9)
        runs = api.get("/v1/runs", params={"start": format_hour(HOURS[0]), "end": format_hour(T0 + timedelta(hours=3))})
        assert runs.status_code == 200, runs.text
        first = runs.json()["runs"][0]
        assert first["sources"]["orders"]["invalid_by_reason"] == frames[0][1][1]
        assert first["sources"]["visits"]["invalid_by_reason"] == frames[0][0][1]
    for hour, ((_, visit_reasons), (_, order_reasons)) in zip(HOURS, frames, strict=True):
        stats = report.computed[format_hour(hour)]
        assert stats["sources"]["visits"]["invalid_by_reason"] == visit_reasons
        assert stats["sources"]["orders"]["invalid_by_reason"] == order_reasons
        assert stats["sources"]["visits"]["duplicate_rows"] == 20
        assert stats["sources"]["orders"]["duplicate_rows"] == 10
        assert stats["rows_read"] == sum(stats["sources"][s]["rows_read"] for s in ("visits", "orders"))


def test_each_source_keeps_its_own_quarantine(tables, computed):
    import pyarrow.parquet as pq

    data_dir = tables[0]
    for source, reasons in (("rides", {"missing_rider", "negative_fare"}), ("orders", {"bad_total"})):
        table = pq.read_table(data_dir / "quarantine" / source)
        assert reasons <= set(table.column("reason").to_pylist())


def test_a_changed_metric_is_incomplete_until_recomputed_and_an_added_one_is_null(spark, tables, tmp_path, layout):
    """Changing `long_trips`'s `where` marks exactly its hours incomplete; the next hourly run heals it."""
    import copy
    import shutil

    from tally.app.pipeline import compute, find_stale, lookback, publish_settings_hours

    data_dir = tmp_path / "data"
    shutil.copytree(tables[0] / "lake", data_dir / "lake")
    before = Settings(
        redis_url=TEST_REDIS_URL,
        redis_prefix=layout.prefix,
        data_dir=data_dir,
        spec_path=specs.write_spec(tmp_path / "v1.yaml", specs.RIDES_SPEC),
        spark_master="local[2]",
    )
    run_hours(spark, data_dir, load_spec(before.spec_path), HOURS)
    publish_settings_hours(before, HOURS)

    changed = copy.deepcopy(specs.RIDES_SPEC)
    long_trips = next(m for m in changed["metrics"] if m["name"] == "long_trips")
    long_trips["where"] = "distance_km > 20"
    changed["metrics"].append(
        {
            "name": "bike_trips",
            "description": "Bike rides.",
            "unit": "rides",
            "kind": "count",
            "filter": {"vehicle_kind": "bike"},
            "dimensions": ["city"],
        }
    )
    after = before.model_copy(update={"spec_path": specs.write_spec(tmp_path / "v2.yaml", changed)})
    frames = [specs.rides_frame(data_dir, hour)[0] for hour in HOURS]

    def points(api: TestClient, metric: str) -> list[tuple]:
        (series,) = hourly(api, metric)
        return [(p["value"], p["complete"]) for p in series["points"]]

    with TestClient(create_app(after)) as api:
        old = [int((f["distance_km"] > 10).sum()) for f in frames]
        assert points(api, "long_trips") == [(n, False) for n in old]  # served, but not as complete
        assert points(api, "bike_trips") == [(None, False)] * 3  # never 0 before it is computed
        assert [c for _, c in points(api, "trips")] == [True] * 3  # untouched metrics stay complete
        assert [c for _, c in points(api, "fare_per_trip")] == [True] * 3
        health = api.get("/health").json()
        assert health["redefined_hours"] == {
            "long_trips": [format_hour(h) for h in HOURS],
            "bike_trips": [format_hour(h) for h in HOURS],
        }

    # The next hourly run (for the last hour) recomputes the earlier ones within the horizon.
    stale = find_stale(after, lookback(HOURS[-1], after.late_data_horizon_hours))
    assert stale.recompute == HOURS[:-1]
    computed = compute(after, [HOURS[-1]], stale, app_name="test")
    publish_settings_hours(after, [datetime.fromisoformat(h) for h in computed.publish])
    with TestClient(create_app(after)) as api:
        assert points(api, "long_trips") == [(int((f["distance_km"] > 20).sum()), True) for f in frames]
        assert points(api, "bike_trips") == [(int((f["vehicle"] == "bike").sum()), True) for f in frames]
        assert api.get("/health").json()["redefined_hours"] == {}
    # A removed metric disappears from the API at once.
    removed = copy.deepcopy(changed)
    removed["metrics"] = [m for m in removed["metrics"] if m["name"] != "bike_trips"]
    gone = after.model_copy(update={"spec_path": specs.write_spec(tmp_path / "v3.yaml", removed)})
    with TestClient(create_app(gone)) as api:
        query = {"start": format_hour(HOURS[0]), "end": format_hour(HOURS[-1] + timedelta(hours=1))}
        assert api.get("/v1/metrics/bike_trips", params=query).status_code == 404
        assert "bike_trips" not in [m["name"] for m in api.get("/v1/metrics").json()["metrics"]]


@pytest.mark.e2e
def test_the_shop_spec_through_airflow_dags_test(tables, tmp_path_factory, redis_server, redis_client):
    """`airflow dags test tally_hourly` waits for both sources, computes and publishes them together."""
    from tests.support.airflow import prepared_env, run_airflow

    data_dir, visits_root, _, shop_path = tables
    airflow_data = tmp_path_factory.mktemp("airflow-data")
    import shutil

    shutil.copytree(data_dir / "shop", airflow_data / "shop")  # the visits table stays outside, by absolute path
    prefix = f"{TEST_PREFIX}-shop-airflow-{os.getpid()}"
    env = prepared_env(
        tmp_path_factory.mktemp("airflow-home"),
        TALLY_DATA_DIR=str(airflow_data),
        TALLY_SPEC_PATH=str(shop_path),
        TALLY_REDIS_PREFIX=prefix,
        REDIS_URL=redis_server,
        SPARK_MASTER="local[2]",
    )
    try:
        run = run_airflow(env, "dags", "test", "tally_hourly", (HOURS[2] + timedelta(hours=1)).isoformat())
        output = run.stdout + run.stderr
        assert "state=success" in output, output[-4000:]
        assert f"run statistics {format_hour(HOURS[2])}: rows read" in output
        settings = Settings(redis_url=redis_server, redis_prefix=prefix, spec_path=shop_path, data_dir=airflow_data)
        (visits, _), (orders, _) = specs.visits_frame(visits_root, HOURS[2]), specs.orders_frame(airflow_data, HOURS[2])
        answer = specs.shop_metrics(visits, orders)
        query = {"grain": "hour", "start": format_hour(HOURS[2]), "end": format_hour(HOURS[2] + timedelta(hours=1))}
        with TestClient(create_app(settings)) as api:

            def point(metric: str) -> dict:
                return api.get(f"/v1/metrics/{metric}", params=query).json()["series"][0]["points"][0]

            assert point("visits")["value"] == answer["visits"]
            assert point("paid_orders")["value"] == answer["paid_orders"]
            assert point("order_revenue")["value"] == pytest.approx(answer["order_revenue"], abs=0.005)
            assert within(point("visitors")["value"], answer["visitors"])
            conversion = point("visit_conversion")
            assert conversion["complete"] is True
            assert conversion["value"] == pytest.approx(answer["paid_orders"] / answer["visits"], rel=1e-9)
    finally:
        delete_prefix(redis_client, KeyLayout(prefix))


def test_an_hour_waits_for_every_source_and_names_the_missing_one(tables, tmp_path):
    from jobs.hourly import RunReport, plan_inputs
    from tally.app.pipeline import missing_inputs

    data_dir, visits_root, _, shop_path = tables
    late = HOURS[-1] + timedelta(hours=1)
    (data_dir / f"shop/orders/dt={late:%Y-%m-%d}/hr={late:%H}").mkdir(parents=True, exist_ok=True)
    settings = Settings(spec_path=shop_path, data_dir=data_dir)
    assert missing_inputs(settings, late) == [("visits", visits_root / "web" / f"{late:%Y%m%d}" / f"{late:%H}")]
    assert missing_inputs(settings, HOURS[0]) == []
    report = RunReport()
    assert plan_inputs(data_dir, load_spec(shop_path), [late], report) == []
    assert "source 'visits'" in report.missing[format_hour(late)]
    assert "source 'orders'" not in report.missing[format_hour(late)]


def test_a_late_file_in_one_source_is_pending_naming_it_then_recomputed(spark, tables, tmp_path, layout, redis_client):
    """Late data works per source: the hour is marked pending for `orders`, recomputed, and both sources switch."""
    import json
    import shutil

    import numpy as np

    from tally.app.pipeline import compute, find_stale, lookback, publish_settings_hours

    data_dir, visits_root, _, shop_path = tables
    copy_dir = tmp_path / "data"
    shutil.copytree(data_dir / "shop", copy_dir / "shop")
    settings = Settings(
        redis_url=TEST_REDIS_URL,
        redis_prefix=layout.prefix,
        data_dir=copy_dir,
        spec_path=shop_path,
        spark_master="local[2]",
    )
    run_hours(spark, copy_dir, load_spec(shop_path), HOURS)
    publish_settings_hours(settings, HOURS)
    late_dir = copy_dir / f"shop/orders/dt={HOURS[1]:%Y-%m-%d}/hr={HOURS[1]:%H}"
    before = specs.shop_metrics(specs.visits_frame(visits_root, HOURS[1])[0], specs.orders_frame(copy_dir, HOURS[1])[0])
    extra = tmp_path / "extra"
    specs.write_orders(extra, HOURS[1], np.random.default_rng(99), n=40)
    source = extra / f"shop/orders/dt={HOURS[1]:%Y-%m-%d}/hr={HOURS[1]:%H}/a.parquet"
    import pandas as pd

    late = pd.read_parquet(source)
    late["order_no"] = "late-" + late["order_no"]  # new orders, not copies of delivered ones
    late.to_parquet(late_dir / "late.parquet", index=False)

    stale = find_stale(settings, lookback(HOURS[2], settings.late_data_horizon_hours))
    assert stale.recompute == [HOURS[1]]
    mark = json.loads(redis_client.hget(KeyLayout(layout.prefix).pending(), "2026-10-05T01Z"))
    assert mark["reason"].endswith("(sources: orders)")
    computed = compute(settings, [HOURS[2]], stale, app_name="test")
    publish_settings_hours(settings, [datetime.fromisoformat(h) for h in computed.publish])
    after = specs.shop_metrics(specs.visits_frame(visits_root, HOURS[1])[0], specs.orders_frame(copy_dir, HOURS[1])[0])
    assert after["paid_orders"] > before["paid_orders"]
    with TestClient(create_app(settings)) as api:
        (series,) = hourly(api, "paid_orders")
        point = series["points"][1]
        assert (point["value"], point["complete"], point["revised"]) == (after["paid_orders"], True, True)
        (series,) = hourly(api, "visit_conversion")
        assert series["points"][1]["value"] == pytest.approx(after["paid_orders"] / after["visits"], rel=1e-9)
