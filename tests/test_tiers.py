"""Retention tiers: days leave the hour tier for their day aggregate without changing an answer.

The data set is 18 UTC days ending yesterday (the API counts retention back from
the real now), published from durable rollups written here, with a count sliced
by country and a distinct count with real HLL sketches. With 14 days of hours kept,
the oldest days move to the day tier; every day, week and month answer over them
must be what it was before the move, byte for byte in the series.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import datasketches
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient

from bench.server import start_server
from cache import sketches
from cache.keys import DAY_BUILDS_FIELD, META_HOURS_FROM, KeyLayout, day_hours, parse_day_index_value
from cache.options import PublishOptions
from cache.publish import publish_hours
from cache.rehydrate import rehydrate
from cache.rollback import rollback_hour
from cache.tiers import enforce_tiers, first_kept_day, hour_tier_start, move_day
from dashboard_api import create_app
from tally.core.layout import day_field, hour_field, parse_hour_field, rollup_hour_dir, stats_hour_dir
from tally.core.rollup import NotComputedError
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import load_spec
from tests.conftest import TEST_REDIS_URL, delete_prefix
from tests.support.net import free_port

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAYS = 18
RETENTION = 14
TTL = 60
OPTIONS = PublishOptions(superseded_ttl=TTL)
TODAY = datetime.now(UTC).date()
FIRST_DAY = TODAY - timedelta(days=DAYS)
ALL_DAYS = [FIRST_DAY + timedelta(days=i) for i in range(DAYS)]


def moved_days(today: date = TODAY) -> list[date]:
    kept = first_kept_day(datetime.now(UTC), RETENTION)
    assert kept is not None
    return [day for day in ALL_DAYS if day < kept]


def events_of(hour: datetime) -> int:
    return (hour.day * 24 + hour.hour) % 7 + 1


def users_of(hour: datetime) -> list[str]:
    return [f"user-{(hour.day * 24 + hour.hour) * 100 % 20_000 + i}" for i in range(100)]


def write_rollup(data_dir: Path, hour: datetime, extra_events: int = 0) -> None:
    """One hour's durable rollup as the job writes it (every dimension column, stats last)."""
    blank = {dim: None for dim in SPEC.dimensions}
    sketch = datasketches.hll_sketch(SPEC.sketch_lg_k, datasketches.tgt_hll_type.HLL_8)
    for user in users_of(hour):
        sketch.update(user)
    events = events_of(hour) + extra_events
    rows = [
        {"metric": "events", **blank, "value": float(events), "sketch": None},
        {"metric": "events", **blank, "country": "US", "value": float(events // 2 + 1), "sketch": None},
        {
            "metric": "active_users",
            **blank,
            "value": float(sketch.get_estimate()),
            "sketch": sketch.serialize_compact(),
        },
    ]
    rollup, stats = rollup_hour_dir(data_dir, hour), stats_hour_dir(data_dir, hour)
    rollup.mkdir(parents=True, exist_ok=True)
    stats.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), rollup / "part-0.parquet")
    stat = {"rows_read": events, "input_fingerprint": f"fp-{hour_field(hour)}-{extra_events}"}
    pq.write_table(pa.Table.from_pylist([stat]), stats / "part-0.parquet")


HOURS = [hour for day in ALL_DAYS for hour in day_hours(day)]


@pytest.fixture(scope="module")
def rollups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The durable rollups of every hour, written once (a test that changes one copies them)."""
    data_dir = tmp_path_factory.mktemp("rollups")
    for hour in HOURS:
        write_rollup(data_dir, hour)
    return data_dir


@pytest.fixture
def published(redis_client: redis.Redis, layout: KeyLayout, rollups: Path) -> Path:
    publish_hours(redis_client, layout, rollups, SPEC, HOURS, OPTIONS)
    return rollups


@pytest.fixture
def api(layout: KeyLayout) -> Iterator[TestClient]:
    settings = Settings(redis_url=TEST_REDIS_URL, redis_prefix=layout.prefix, hour_retention_days=RETENTION)
    with TestClient(create_app(settings)) as client:
        yield client


def enforce(client: redis.Redis, layout: KeyLayout, day_retention_days: int = 0):
    return enforce_tiers(
        client,
        layout,
        SPEC,
        hour_retention_days=RETENTION,
        day_retention_days=day_retention_days,
        superseded_ttl=TTL,
    )


def day_and_longer_answers(api: TestClient) -> dict[str, object]:
    """Series of every grain a moved day still serves, over the whole data set."""
    start, end = day_field(FIRST_DAY), day_field(TODAY)
    month_start = day_field(FIRST_DAY.replace(day=1))
    paths = {
        "day": f"/v1/metrics/events?grain=day&start={start}&end={end}",
        "day_by_country": f"/v1/metrics/events?grain=day&start={start}&end={end}&group_by=country",
        "active_day": f"/v1/metrics/active_users?grain=day&start={start}&end={end}",
        "active_7d": f"/v1/metrics/active_users?grain=day&start={start}&end={end}&window=7d",
        "week": f"/v1/metrics/events?grain=week&start={_monday(FIRST_DAY)}&end={_monday(TODAY)}",
        "active_week": f"/v1/metrics/active_users?grain=week&start={_monday(FIRST_DAY)}&end={_monday(TODAY)}",
        "month": f"/v1/metrics/active_users?grain=month&start={month_start}&end={day_field(_next_month(TODAY))}",
    }
    answers = {}
    for name, path in paths.items():
        response = api.get(path)
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()["series"]
    return answers


def _key_day(key: bytes) -> date:
    return date.fromisoformat(key.decode().split(":")[2])  # {p}:day:{day}:{metric}:...


def _monday(day: date) -> str:
    return day_field(day - timedelta(days=day.weekday()))


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def test_hour_tier_start_counts_back_from_the_current_hour():
    now = datetime(2026, 12, 3, 7, 41, tzinfo=UTC)
    assert hour_tier_start(now, 14) == datetime(2026, 11, 19, 7, tzinfo=UTC)
    assert first_kept_day(now, 14) == date(2026, 11, 19)
    assert hour_tier_start(now, 0) is None and first_kept_day(now, 0) is None


def test_a_move_keeps_every_day_week_and_month_answer(redis_client, layout, published, api):
    before = day_and_longer_answers(api)
    index_before = redis_client.hgetall(layout.day_index())
    day_hashes = {key: redis_client.hgetall(key) for key in redis_client.scan_iter(match=f"{layout.prefix}:day:*")}

    report = enforce(redis_client, layout)

    moved = moved_days()
    assert report.moved_days == moved and len(moved) >= DAYS - RETENTION
    assert day_and_longer_answers(api) == before
    # The day tier is what it was; only the moved days' hours are gone from the pointers.
    assert redis_client.hgetall(layout.day_index()) == index_before
    after = {key: redis_client.hgetall(key) for key in day_hashes}
    assert {k: v for k, v in after.items() if b":sketches" not in k} == {
        k: v for k, v in day_hashes.items() if b":sketches" not in k
    }
    # Moved days' sketches are HLL_4: the same registers and estimates, in fewer bytes.
    moved_sketches = [k for k in day_hashes if b":sketches" in k and _key_day(k) in moved]
    assert moved_sketches
    shrunk = 0
    for key in day_hashes:
        if b":sketches" not in key:
            continue
        assert after[key].keys() == day_hashes[key].keys()
        for name, blob in day_hashes[key].items():
            if name == DAY_BUILDS_FIELD.encode():
                assert after[key][name] == blob
                continue
            assert sketches.estimate_of(after[key][name]) == sketches.estimate_of(blob)
            registers = sketches.dense_registers(blob, SPEC.sketch_lg_k)
            if registers is not None:
                assert np.array_equal(sketches.dense_registers(after[key][name], SPEC.sketch_lg_k), registers)
            if key in moved_sketches and sketches.is_dense_hll8(blob, SPEC.sketch_lg_k):
                assert len(after[key][name]) < len(blob) * 0.6
                shrunk += 1
    assert shrunk >= len(moved)  # every moved day's total is dense (2,400 users a day)
    kept_hours = {hour_field(h) for day in ALL_DAYS if day not in moved for h in day_hours(day)}
    assert {f.decode() for f in redis_client.hkeys(layout.pointer())} == kept_hours
    assert redis_client.hget(layout.meta(), META_HOURS_FROM).decode() == day_field(moved[-1] + timedelta(days=1))
    # The moved builds' keys stay readable for in-flight readers, then expire.
    old_hour = hour_field(day_hours(moved[0])[5])
    build = parse_day_index_value(index_before[day_field(moved[0]).encode()].decode())[0].split(",")[5]
    assert 0 < redis_client.ttl(layout.values(build, old_hour, "events")) <= TTL
    assert not redis_client.exists(layout.history(old_hour))
    # Nothing is left to move.
    assert enforce(redis_client, layout).moved_days == []


def test_hour_grain_beyond_retention_is_refused_naming_the_oldest_hour(redis_client, layout, published, api):
    enforce(redis_client, layout)
    oldest = hour_tier_start(datetime.now(UTC), RETENTION)
    assert oldest is not None
    inside = api.get(f"/v1/metrics/events?grain=hour&start={oldest:%Y-%m-%dT%H:00Z}&end={TODAY}")
    assert inside.status_code == 200
    too_old = oldest - timedelta(hours=1)
    refused = api.get(f"/v1/metrics/events?grain=hour&start={too_old:%Y-%m-%dT%H:00Z}&end={TODAY}")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "beyond_hour_retention"
    assert f"{oldest:%Y-%m-%dT%H:00:00Z}" in error["message"] and "TALLY_HOUR_RETENTION_DAYS" in error["message"]
    # Local days of a moved range need its hours: refused too, never answered from part of a day.
    local = api.get(f"/v1/metrics/events?grain=day&tz=America/New_York&start={FIRST_DAY}&end={TODAY}")
    assert local.status_code == 400 and local.json()["error"]["code"] == "beyond_hour_retention"


def test_publishing_an_hour_of_a_moved_day_rebuilds_its_day_from_the_rollups(
    redis_client, layout, published, api, tmp_path
):
    data_dir = tmp_path / "data"
    shutil.copytree(published, data_dir)
    enforce(redis_client, layout)
    day = moved_days()[0]
    late = day_hours(day)[7]
    start, end = day_field(day), day_field(day + timedelta(days=1))
    before = api.get(f"/v1/metrics/events?grain=day&start={start}&end={end}").json()["series"][0]["points"][0]
    assert before["value"] == sum(events_of(h) for h in day_hours(day)) and before["revised"] is False

    write_rollup(data_dir, late, extra_events=100)  # late data recomputed the hour
    publish_hours(redis_client, layout, data_dir, SPEC, [late], OPTIONS)

    after = api.get(f"/v1/metrics/events?grain=day&start={start}&end={end}").json()["series"][0]["points"][0]
    assert after["value"] == before["value"] + 100
    assert after["revised"] is True and after["complete"] is True
    # The day went back to the day tier: no pointer of it is left, and only the late hour is revised.
    assert not any(redis_client.hmget(layout.pointer(), [hour_field(h) for h in day_hours(day)]))
    flags = parse_day_index_value(redis_client.hget(layout.day_index(), day_field(day)).decode())[2]
    assert [i for i, flag in enumerate(flags) if flag] == [7]


def test_a_stale_day_aggregate_is_rebuilt_before_its_hours_go(redis_client, layout, published, api):
    day = moved_days()[0]
    start, end = day_field(day), day_field(day + timedelta(days=1))
    expected = sum(events_of(h) for h in day_hours(day))
    # As if a publish died between its switch and the day rebuild: the aggregate names other builds.
    key = layout.day_values(day_field(day), "events")
    redis_client.hset(key, mapping={DAY_BUILDS_FIELD: "stale", "_": "1"})
    assert move_day(redis_client, layout, SPEC, day, TTL) is True
    point = api.get(f"/v1/metrics/events?grain=day&start={start}&end={end}").json()["series"][0]["points"][0]
    assert point["value"] == expected


def test_days_beyond_the_day_tier_expire(redis_client, layout, published, api):
    report = enforce(redis_client, layout, day_retention_days=DAYS - 1)
    assert report.expired_days == [FIRST_DAY]
    assert not list(redis_client.scan_iter(match=f"{layout.prefix}:day:{day_field(FIRST_DAY)}:*"))
    assert not redis_client.hexists(layout.day_index(), day_field(FIRST_DAY))
    first = api.get(f"/v1/metrics/events?grain=day&start={FIRST_DAY}&end={FIRST_DAY + timedelta(days=2)}").json()
    values = [p["value"] for p in first["series"][0]["points"]]
    assert values == [None, sum(events_of(h) for h in day_hours(FIRST_DAY + timedelta(days=1)))]


def test_concurrent_http_readers_never_see_a_moving_day_missing_or_mixed(redis_client, layout, published, api):
    """Readers hammer a real `tally serve` while the oldest days move out, come back and move again."""
    paths = [
        f"/v1/metrics/events?grain=day&start={FIRST_DAY}&end={TODAY}",
        f"/v1/metrics/active_users?grain=week&start={_monday(FIRST_DAY)}&end={_monday(TODAY)}",
    ]
    expected = {path: api.get(path).json()["series"] for path in paths}
    port = free_port()
    server = start_server(TEST_REDIS_URL, layout.prefix, port, env={"TALLY_API_RESPONSE_CACHE_MB": "0"})
    stop = threading.Event()
    wrong: list[str] = []
    reads = [0]

    def read() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            while not stop.is_set():
                for path in paths:
                    response = http.get(path)
                    reads[0] += 1
                    if response.status_code != 200 or response.json()["series"] != expected[path]:
                        wrong.append(f"{path}: {response.status_code} {response.text[:300]}")

    readers = [threading.Thread(target=read) for _ in range(3)]
    try:
        for reader in readers:
            reader.start()
        moved = moved_days()
        for _ in range(3):
            enforce(redis_client, layout)
            # Republishing an hour of each moved day brings the day's hours back, then moves it again.
            publish_hours(redis_client, layout, published, SPEC, [day_hours(d)[3] for d in moved], OPTIONS)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
        server.terminate()
        server.wait(timeout=10)
    assert reads[0] > 20 and not wrong, wrong[:3]


def test_rehydrate_restores_the_tiers_as_configured(redis_client, layout, published, api):
    enforce(redis_client, layout)
    before = day_and_longer_answers(api)
    index_before = redis_client.hgetall(layout.day_index())
    delete_prefix(redis_client, layout)

    tiered = replace(OPTIONS, hour_retention_days=RETENTION)
    assert rehydrate(redis_client, layout, published, SPEC, tiered) == len(HOURS)

    assert day_and_longer_answers(api) == before
    assert redis_client.hgetall(layout.day_index()).keys() == index_before.keys()
    moved = moved_days()
    kept_hours = {hour_field(h) for day in ALL_DAYS if day not in moved for h in day_hours(day)}
    assert {f.decode() for f in redis_client.hkeys(layout.pointer())} == kept_hours
    # Only moved builds' keys are left expiring: what a tiered Redis holds is bounded.
    expiring = [k for k in redis_client.scan_iter(match=f"{layout.prefix}:b:*") if redis_client.ttl(k) > 0]
    assert expiring and all(parse_hour_key_day(k) in moved for k in expiring)


def parse_hour_key_day(key: bytes) -> date:
    hour_text = key.decode().split(":")[3]  # {p}:b:{build}:{hour}:...
    return parse_hour_field(hour_text).date()


def test_rolling_back_a_moved_hour_says_it_is_in_the_day_tier(redis_client, layout, published):
    enforce(redis_client, layout)
    with pytest.raises(NotComputedError, match="day tier"):
        rollback_hour(redis_client, layout, day_hours(moved_days()[0])[4], spec=SPEC)
