"""Week aggregates of theta metrics (cache.weeks): built from the day hashes, trusted only while live.

Real theta sketches (tests/support/rollups.py) for two whole UTC weeks and one day
of a third are published to a real Redis through the production paths (rehydrate,
publish, rollback, tiers) and read over HTTP with the response cache off. The
answers must be the same read by weeks or by days, and a week hash must be what
the API actually reads while it matches the day index, and be ignored once not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import datasketches
import pytest
import redis
from fastapi.testclient import TestClient

import cache.days
from cache.client import text
from cache.days import rebuild_days
from cache.keys import TIER_DAY, KeyLayout, parse_day_index_value
from cache.options import PublishOptions
from cache.publish import publish_hours
from cache.rehydrate import rehydrate
from cache.rollback import rollback_hour
from cache.tiers import enforce_tiers
from cache.weeks import WEEK_DAYS_FIELD, has_weeks, week_days, week_days_text, week_of, whole_weeks
from dashboard_api import create_app
from tally.core.layout import day_field
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import MetricSpec, load_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.rollups import rollup_table, stats_table, synthetic_events, write_hour

FIRST = datetime(2026, 10, 26, tzinfo=UTC)  # a Monday
HOURS = [FIRST + timedelta(hours=i) for i in range(24 * 15)]  # two whole weeks and Monday 2026-11-09
WHOLE_WEEKS = [date(2026, 10, 26), date(2026, 11, 2)]
PARTIAL_WEEK = date(2026, 11, 9)
SPEC = load_spec(DEFAULT_SPEC_PATH)
THETA = [metric for metric in SPEC.stored if has_weeks(metric)]
OPTIONS = PublishOptions(superseded_ttl=60)
# Requests that read theta sketches over whole weeks, and over weeks mixed with days and hours.
REQUESTS: list[tuple[str, dict[str, str]]] = [
    (
        "/v1/retention",
        {"cohort": "new_users", "returning": "returning_users", "grain": "week", "start": "2026-10-26"}
        | {"end": "2026-11-16", "periods": "2"},
    ),
    (
        "/v1/retention",
        {"cohort": "viewers", "returning": "buyers", "grain": "week", "start": "2026-10-26"}
        | {"end": "2026-11-09", "periods": "1", "platform": "ios", "bounds": "true"},
    ),
    ("/v1/metrics/returning_users", {"grain": "week", "start": "2026-10-26", "end": "2026-11-16"}),
    ("/v1/metrics/viewers", {"grain": "week", "start": "2026-10-26", "end": "2026-11-09", "group_by": "platform"}),
    ("/v1/metrics/carters", {"grain": "month", "start": "2026-10-01", "end": "2026-12-01", "bounds": "true"}),
    ("/v1/metrics/buyers", {"grain": "day", "start": "2026-11-02", "end": "2026-11-10", "window": "7d"}),
    ("/v1/metrics/viewers", {"grain": "month", "start": "2026-10-01", "end": "2026-12-01", "tz": "America/New_York"}),
    ("/v1/funnel", {"steps": "viewers,carters,buyers", "grain": "week", "start": "2026-10-26", "end": "2026-11-09"}),
]


USERS, EVENTS_PER_HOUR = 20_000, 80  # a week's sketches are in estimation mode (> 4,096 ids), a day's not


def write_hours(folder: Path, spec: MetricSpec, hours: list[datetime], seed: int = 0) -> None:
    """Rollups of synthetic events whose users spread over weeks, so a week's union differs from its days'."""
    for index, hour in enumerate(hours):
        events = synthetic_events(seed + index, EVENTS_PER_HOUR)
        for number, event in enumerate(events):
            event["user_id"] = f"u{(seed + index) * 7919 % USERS + number * 31 % 997}"
        stats = stats_table(spec, len(events), f"fp{seed + index:014d}", datetime(2026, 1, 1, tzinfo=UTC))
        write_hour(folder, hour, rollup_table(spec, events), stats)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weeks")
    write_hours(folder, SPEC, HOURS)
    return folder


@pytest.fixture
def published(lake: Path, redis_server: str, request: pytest.FixtureRequest) -> Iterator[tuple[redis.Redis, KeyLayout]]:
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{TEST_PREFIX}-weeks-{request.node.name[:40]}")
    rehydrate(client, layout, lake, SPEC, OPTIONS)
    yield client, layout
    delete_prefix(client, layout)
    client.close()


@pytest.fixture
def api(published: tuple[redis.Redis, KeyLayout], lake: Path, redis_server: str) -> Iterator[TestClient]:
    _, layout = published
    settings = Settings(
        redis_url=redis_server,
        redis_prefix=layout.prefix,
        spec_path=DEFAULT_SPEC_PATH,
        data_dir=lake,
        api_response_cache_mb=0,  # every request computes its answer
    )
    with TestClient(create_app(settings)) as client:
        yield client


def week_keys(client: redis.Redis, layout: KeyLayout) -> set[str]:
    return {text(key) for key in client.scan_iter(match=f"{layout.prefix}:week:*")}


def week_hash(client: redis.Redis, layout: KeyLayout, monday: date, metric: str) -> dict[str, bytes]:
    fields = client.hgetall(layout.week_sketches(day_field(monday), metric))
    return {text(name): value for name, value in fields.items()}


def index_texts(client: redis.Redis, layout: KeyLayout, monday: date) -> list[str]:
    entries = client.hmget(layout.day_index(), [day_field(day) for day in week_days(monday)])
    return [parse_day_index_value(text(entry))[0] for entry in entries]


def answers(api: TestClient) -> list[dict[str, Any]]:
    bodies = []
    for path, params in REQUESTS:
        response = api.get(path, params=params)
        assert response.status_code == 200, (path, params, response.text)
        bodies.append(response.json())
    return bodies


def union_estimate(blobs: list[bytes]) -> float:
    union = datasketches.theta_union(12)
    for blob in blobs:
        union.update(datasketches.compact_theta_sketch.deserialize(blob))
    return union.get_result().get_estimate()


def test_calendar_helpers() -> None:
    assert week_of(date(2026, 11, 8)) == date(2026, 11, 2) and week_of(date(2026, 11, 2)) == date(2026, 11, 2)
    days = [date(2026, 10, 31) + timedelta(days=i) for i in range(17)]  # Sat .. Mon two weeks later
    mondays, rest = whole_weeks(days)
    assert mondays == [date(2026, 11, 2), date(2026, 11, 9)]
    assert rest == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 16)]
    assert whole_weeks(days[2:8]) == ([], days[2:8])  # six days of a week are not a week
    with pytest.raises(ValueError, match="7 days"):
        week_days_text(["-"] * 6)


def test_whole_computed_weeks_get_unions_of_their_days(published: tuple[redis.Redis, KeyLayout]) -> None:
    client, layout = published
    expected = {layout.week_sketches(day_field(monday), metric.name) for monday in WHOLE_WEEKS for metric in THETA}
    assert week_keys(client, layout) == expected  # no week for HLL or KLL metrics, none for the partial week
    for monday in WHOLE_WEEKS:
        for metric in THETA:
            fields = week_hash(client, layout, monday, metric.name)
            assert text(fields.pop(WEEK_DAYS_FIELD)) == week_days_text(index_texts(client, layout, monday))
            day_hashes = [client.hgetall(layout.day_sketches(day_field(day), metric.name)) for day in week_days(monday)]
            for slice_text, blob in fields.items():
                parts = [h[slice_text.encode()] for h in day_hashes if slice_text.encode() in h]
                week = datasketches.compact_theta_sketch.deserialize(blob).get_estimate()
                assert week == union_estimate(parts), (monday, metric.name, slice_text)
    assert layout.classify(next(iter(expected))).tier == TIER_DAY  # counted in the day tier's storage


def test_answers_are_the_same_read_by_weeks_or_by_days(
    published: tuple[redis.Redis, KeyLayout], api: TestClient
) -> None:
    client, layout = published
    by_weeks = answers(api)
    client.delete(*week_keys(client, layout))
    assert answers(api) == by_weeks


def test_the_api_reads_a_live_week_hash_and_ignores_a_stale_one(
    published: tuple[redis.Redis, KeyLayout], api: TestClient
) -> None:
    client, layout = published
    params = {"grain": "week", "start": "2026-10-26", "end": "2026-11-09"}
    honest = [p["value"] for p in api.get("/v1/metrics/returning_users", params=params).json()["series"][0]["points"]]
    # Forge the first week's total with a sketch of 3 ids and the live @days: the API must answer 3.
    forged = datasketches.update_theta_sketch(12)
    for user in ("x", "y", "z"):
        forged.update(user)
    key = layout.week_sketches(day_field(WHOLE_WEEKS[0]), "returning_users")
    client.hset(key, "_", forged.compact().serialize())
    read = [p["value"] for p in api.get("/v1/metrics/returning_users", params=params).json()["series"][0]["points"]]
    assert read == [3, honest[1]]
    # The same forged sketch under @days of other builds is not trusted: the days answer.
    client.hset(key, WEEK_DAYS_FIELD, week_days_text(["-"] * 7))
    read = [p["value"] for p in api.get("/v1/metrics/returning_users", params=params).json()["series"][0]["points"]]
    assert read == honest


def test_a_republished_day_rebuilds_its_week(
    published: tuple[redis.Redis, KeyLayout],
    api: TestClient,
    lake: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, layout = published
    monday = WHOLE_WEEKS[1]
    before = week_hash(client, layout, monday, "returning_users")
    hour = datetime(2026, 11, 4, 13, tzinfo=UTC)
    write_hours(lake, SPEC, [hour], seed=10_000)  # new input for one hour of the second week
    try:
        # A publish whose week rebuild never happens (it died after its days): the week is stale.
        monkeypatch.setattr(cache.days, "_rebuild_week", lambda *args: None)
        publish_hours(client, layout, lake, SPEC, [hour], OPTIONS)
        stale = week_hash(client, layout, monday, "returning_users")
        assert stale[WEEK_DAYS_FIELD] == before[WEEK_DAYS_FIELD]
        assert text(stale[WEEK_DAYS_FIELD]) != week_days_text(index_texts(client, layout, monday))
        served = answers(api)
        client.delete(*week_keys(client, layout))
        assert answers(api) == served  # the stale week was not used
        monkeypatch.undo()
        rebuild_days(client, layout, SPEC, [hour.date()])
        rebuilt = week_hash(client, layout, monday, "returning_users")
        assert text(rebuilt[WEEK_DAYS_FIELD]) == week_days_text(index_texts(client, layout, monday))
        assert rebuilt[WEEK_DAYS_FIELD] != before[WEEK_DAYS_FIELD]
        assert answers(api) == served
        # A rollback switches the hour back and rebuilds its day and week.
        rollback_hour(client, layout, hour, spec=SPEC)
        rolled = week_hash(client, layout, monday, "returning_users")
        assert rolled == before
    finally:
        write_hours(lake, SPEC, [hour], seed=HOURS.index(hour))  # the module's lake as it was


def test_a_publish_racing_a_week_rebuild_is_not_overwritten(
    published: tuple[redis.Redis, KeyLayout], lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, layout = published
    monday = WHOLE_WEEKS[0]
    hour = datetime(2026, 10, 30, 5, tzinfo=UTC)
    stage = cache.days._stage
    raced: list[bool] = []

    def stage_then_publish(*args: Any, **kwargs: Any) -> dict[str, str]:
        staged = stage(*args, **kwargs)
        if not raced and any(":week:" in key for key in staged.values()):
            raced.append(True)  # another publisher switches an hour of the week before our renames
            monkeypatch.setattr(cache.days, "_stage", stage)
            write_hours(lake, SPEC, [hour], seed=20_000)
            publish_hours(client, layout, lake, SPEC, [hour], OPTIONS)
        return staged

    monkeypatch.setattr(cache.days, "_stage", stage_then_publish)
    try:
        rebuild_days(client, layout, SPEC, [date(2026, 10, 27)])
    finally:
        write_hours(lake, SPEC, [hour], seed=HOURS.index(hour))
    assert raced
    fields = week_hash(client, layout, monday, "returning_users")
    assert text(fields[WEEK_DAYS_FIELD]) == week_days_text(index_texts(client, layout, monday))
    assert not list(client.scan_iter(match=f"{layout.prefix}:*:tmp:*"))


def test_expiring_a_day_drops_its_weeks_aggregates(published: tuple[redis.Redis, KeyLayout]) -> None:
    client, layout = published
    # Ten days kept from 2026-11-12: 10-26 .. 11-01 leave the day tier, so the first week is not whole.
    enforce_tiers(
        client,
        layout,
        SPEC,
        hour_retention_days=0,
        day_retention_days=10,
        superseded_ttl=60,
        now=datetime(2026, 11, 12, 1, tzinfo=UTC),
    )
    assert week_keys(client, layout) == {
        layout.week_sketches(day_field(WHOLE_WEEKS[1]), metric.name) for metric in THETA
    }
