"""Day aggregates: the day hashes a publish rebuilds from the day's live hourly builds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import datasketches
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

import cache.days
from cache.builds import HourBuild, build_id
from cache.days import rebuild_days
from cache.keys import DAY_BUILDS_FIELD, KeyLayout, day_builds_text
from cache.options import PublishOptions
from cache.publish import publish_builds, publish_hours
from tally.core.layout import hour_field, rollup_hour_dir, stats_hour_dir
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import dump_prefix

SPEC = load_spec(DEFAULT_SPEC_PATH)
DAY = date(2026, 11, 27)
NEXT_DAY = date(2026, 11, 28)
BUILDS = DAY_BUILDS_FIELD.encode()


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def users(start: int, stop: int, step: int = 1) -> set[str]:
    return {f"user-{i}" for i in range(start, stop, step)}


def sketch(members: Iterable[str]) -> bytes:
    hll = datasketches.hll_sketch(14, datasketches.tgt_hll_type.HLL_8)
    for member in members:
        hll.update(member)
    return hll.serialize_compact()


def hour_build(
    hour: datetime, events: dict[str, float], revenue: dict[str, float], active: dict[str, set[str]]
) -> HourBuild:
    """An hour as Spark would roll it up, with real sketches for active_users."""
    values = {
        "events": events,
        "revenue": revenue,
        "active_users": {slice_text: float(len(members)) for slice_text, members in active.items()},
    }
    sketches = {"active_users": {slice_text: sketch(members) for slice_text, members in active.items()}}
    return HourBuild(hour, build_id(values, sketches), values, sketches, {})


def builds_text(day: date, builds: Iterable[HourBuild]) -> str:
    """The expected ``@builds`` text, written out independently of day_builds_text."""
    parts = ["-"] * 24
    for build in builds:
        assert build.hour.astimezone(UTC).date() == day
        parts[build.hour.astimezone(UTC).hour] = build.build
    return ",".join(parts)


def day_hash(client: redis.Redis, layout: KeyLayout, day: date, metric: str, kind: str = "values") -> dict[str, bytes]:
    key = (
        layout.day_values(day.isoformat(), metric) if kind == "values" else layout.day_sketches(day.isoformat(), metric)
    )
    return {field.decode(): value for field, value in client.hgetall(key).items()}


def numbers(fields: dict[str, bytes]) -> dict[str, float]:
    return {field: float(value) for field, value in fields.items() if field != DAY_BUILDS_FIELD}


def day_keys(client: redis.Redis, layout: KeyLayout, day: date | None = None) -> set[str]:
    pattern = f"{layout.prefix}:day:{day.isoformat() if day else '*'}:*"
    return {key.decode() for key in client.scan_iter(match=pattern, count=1000)}


def expected_day_keys(layout: KeyLayout, day: date) -> set[str]:
    text = day.isoformat()
    keys = {f"{layout.prefix}:day:{text}:{m.name}:values" for m in SPEC.stored}
    return keys | {f"{layout.prefix}:day:{text}:{m.name}:sketches" for m in SPEC.stored if m.has_sketch}


def assert_estimate(blob_or_number: bytes | float, exact: int) -> None:
    if isinstance(blob_or_number, bytes):
        union = datasketches.hll_sketch.deserialize(blob_or_number)
        assert union.tgt_type == datasketches.tgt_hll_type.HLL_8 and union.lg_config_k == 14
        estimate = union.get_estimate()
    else:
        estimate = blob_or_number
    assert abs(estimate - exact) <= 0.02 * exact, (estimate, exact)


# Three hours of DAY with overlapping users; slices present in some hours only.
ACTIVE_00 = {"_": users(0, 3000), "country=US": users(0, 3000, 2)}
ACTIVE_05 = {"_": users(2000, 6000), "country=US,platform=web": users(2000, 2500)}
ACTIVE_23 = {"_": users(5000, 9000), "country=US": users(5000, 9000, 2)}


def three_hours() -> list[HourBuild]:
    return [
        hour_build(at(DAY, 0), {"_": 10, "country=US": 4}, {"_": 0.1}, ACTIVE_00),
        hour_build(at(DAY, 5), {"_": 7, "country=US,platform=web": 2}, {"_": 0.2}, ACTIVE_05),
        hour_build(at(DAY, 23), {"_": 1, "country=US": 1}, {"_": 0.3, "country=US": 12.5}, ACTIVE_23),
    ]


def test_publish_builds_day_sums_unions_and_builds(redis_client, layout):
    hours = three_hours()
    publish_builds(redis_client, layout, hours, PublishOptions(superseded_ttl=60), spec=SPEC)

    expected_builds = builds_text(DAY, hours).encode()
    assert expected_builds.count(b"-") == 21
    assert day_keys(redis_client, layout) == expected_day_keys(layout, DAY)
    for key in expected_day_keys(layout, DAY):
        assert redis_client.hget(key, DAY_BUILDS_FIELD) == expected_builds, key

    events = day_hash(redis_client, layout, DAY, "events")
    assert numbers(events) == {"_": 18, "country=US": 5, "country=US,platform=web": 2}
    assert events["_"] == b"18"  # counts stay integers, as hourly
    revenue = numbers(day_hash(redis_client, layout, DAY, "revenue"))
    assert revenue.keys() == {"_", "country=US"}
    assert revenue["_"] == pytest.approx(0.6) and revenue["country=US"] == 12.5

    exact = {
        "_": len(ACTIVE_00["_"] | ACTIVE_05["_"] | ACTIVE_23["_"]),
        "country=US": len(ACTIVE_00["country=US"] | ACTIVE_23["country=US"]),
        "country=US,platform=web": len(ACTIVE_05["country=US,platform=web"]),
    }
    assert exact == {"_": 9000, "country=US": 3500, "country=US,platform=web": 500}
    estimates = numbers(day_hash(redis_client, layout, DAY, "active_users"))
    sketches = day_hash(redis_client, layout, DAY, "active_users", "sketches")
    assert estimates.keys() == exact.keys() and sketches.keys() == {*exact, DAY_BUILDS_FIELD}
    for slice_text, count in exact.items():
        assert_estimate(estimates[slice_text], count)
        assert_estimate(sketches[slice_text], count)
    # Unrounded: exactly what a reader unioning the hours itself would get.
    union = datasketches.hll_union(14)
    for active in (ACTIVE_00, ACTIVE_23):
        union.update(datasketches.hll_sketch.deserialize(sketch(active["country=US"])))
    assert estimates["country=US"] == union.get_estimate() != round(union.get_estimate())

    # Metrics with no data that day still carry @builds, so "nothing happened" is cached too.
    assert day_hash(redis_client, layout, DAY, "signups") == {DAY_BUILDS_FIELD: expected_builds}
    assert day_hash(redis_client, layout, DAY, "sessions", "sketches") == {DAY_BUILDS_FIELD: expected_builds}


def test_day_sketches_union_with_hourly_ones(redis_client, layout):
    """A reader may mix day and hourly sketches in one union (HLL_8, same lg_k)."""
    hours = three_hours()
    publish_builds(redis_client, layout, hours, PublishOptions(superseded_ttl=60), spec=SPEC)
    next_hour = {"_": users(8000, 10000)}
    union = datasketches.hll_union(SPEC.sketch_lg_k)
    union.update(
        datasketches.hll_sketch.deserialize(day_hash(redis_client, layout, DAY, "active_users", "sketches")["_"])
    )
    union.update(datasketches.hll_sketch.deserialize(sketch(next_hour["_"])))
    assert_estimate(union.get_estimate(), 10000)


def test_republishing_an_hour_updates_the_day(redis_client, layout):
    first = three_hours()
    publish_builds(redis_client, layout, first, PublishOptions(superseded_ttl=60), spec=SPEC)
    replaced = hour_build(at(DAY, 5), {"_": 9}, {"_": 1.5}, {"_": users(2000, 12000)})
    report = publish_builds(redis_client, layout, [replaced], PublishOptions(superseded_ttl=60), spec=SPEC)
    assert report.published == ["2026-11-27T05:00:00Z"]

    live = [first[0], replaced, first[2]]
    expected_builds = builds_text(DAY, live).encode()
    assert expected_builds != builds_text(DAY, first).encode()
    for key in expected_day_keys(layout, DAY):
        assert redis_client.hget(key, DAY_BUILDS_FIELD) == expected_builds, key
        assert redis_client.ttl(key) == -1, key
    assert numbers(day_hash(redis_client, layout, DAY, "events")) == {"_": 20, "country=US": 5}
    assert numbers(day_hash(redis_client, layout, DAY, "revenue")) == pytest.approx({"_": 1.9, "country=US": 12.5})
    estimates = numbers(day_hash(redis_client, layout, DAY, "active_users"))
    assert estimates.keys() == {"_", "country=US"}  # the web slice left with the old hour 05
    assert_estimate(estimates["_"], len(users(0, 12000)))
    assert_estimate(day_hash(redis_client, layout, DAY, "active_users", "sketches")["_"], 12000)
    assert not list(redis_client.scan_iter(match=f"{layout.prefix}:*:tmp:*"))

    before = dump_prefix(redis_client, layout)
    again = hour_build(at(DAY, 5), {"_": 9}, {"_": 1.5}, {"_": users(2000, 12000)})
    assert publish_builds(redis_client, layout, [again], PublishOptions(superseded_ttl=60), spec=SPEC).published == []
    assert dump_prefix(redis_client, layout) == before
    rebuild_days(redis_client, layout, SPEC, [DAY, DAY])  # a rebuild from the same builds is identical
    assert dump_prefix(redis_client, layout) == before


def test_each_switched_day_is_rebuilt_and_no_other(redis_client, layout):
    late, early = hour_build(at(DAY, 23), {"_": 3}, {}, {}), hour_build(at(NEXT_DAY, 0), {"_": 4}, {}, {})
    publish_builds(redis_client, layout, [late, early], PublishOptions(superseded_ttl=60), spec=SPEC)
    assert day_keys(redis_client, layout) == expected_day_keys(layout, DAY) | expected_day_keys(layout, NEXT_DAY)
    assert day_hash(redis_client, layout, DAY, "events") == {
        "_": b"3",
        DAY_BUILDS_FIELD: builds_text(DAY, [late]).encode(),
    }
    assert day_hash(redis_client, layout, NEXT_DAY, "events") == {
        "_": b"4",
        DAY_BUILDS_FIELD: builds_text(NEXT_DAY, [early]).encode(),
    }

    # A rebuild replaces the whole hash, so a marker field shows whether a day was rewritten.
    for key in expected_day_keys(layout, NEXT_DAY):
        redis_client.hset(key, "marker", "untouched")
    next_day_before = {k: v for k, v in dump_prefix(redis_client, layout).items() if b":day:2026-11-28:" in k}
    changed = hour_build(at(DAY, 23), {"_": 5}, {}, {})
    publish_builds(redis_client, layout, [changed], PublishOptions(superseded_ttl=60), spec=SPEC)
    assert numbers(day_hash(redis_client, layout, DAY, "events")) == {"_": 5}
    assert "marker" not in day_hash(redis_client, layout, DAY, "events")
    next_day_after = {k: v for k, v in dump_prefix(redis_client, layout).items() if b":day:2026-11-28:" in k}
    assert next_day_after == next_day_before


def test_day_is_the_utc_day_of_the_hour(redis_client, layout):
    plus_two = timezone(timedelta(hours=2))
    hour = hour_build(datetime(2026, 11, 28, 1, tzinfo=plus_two), {"_": 2}, {}, {})  # 2026-11-27T23Z
    publish_builds(redis_client, layout, [hour], PublishOptions(superseded_ttl=60), spec=SPEC)
    assert day_keys(redis_client, layout) == expected_day_keys(layout, DAY)
    assert day_hash(redis_client, layout, DAY, "events")[DAY_BUILDS_FIELD].split(b",")[23] == hour.build.encode()


def test_a_day_without_computed_hours_loses_its_day_keys(redis_client, layout):
    publish_builds(redis_client, layout, three_hours(), PublishOptions(superseded_ttl=60), spec=SPEC)
    rebuild_days(redis_client, layout, SPEC, [NEXT_DAY])
    assert day_keys(redis_client, layout, NEXT_DAY) == set()
    # Hours are never unpublished by Tally; an operator removing them is the case this covers.
    redis_client.hdel(layout.pointer(), *[hour_field(at(DAY, h)) for h in (0, 5, 23)])
    rebuild_days(redis_client, layout, SPEC, [DAY])
    assert day_keys(redis_client, layout) == set()


def test_without_a_spec_publish_builds_leaves_days_alone(redis_client, layout):
    publish_builds(redis_client, layout, three_hours(), PublishOptions(superseded_ttl=60))
    assert day_keys(redis_client, layout) == set()


def test_a_pointer_switch_during_a_rebuild_is_not_overwritten(redis_client, layout, monkeypatch):
    first = three_hours()
    concurrent = hour_build(at(DAY, 12), {"_": 100}, {}, {})
    stage = cache.days._stage
    calls = []

    def stage_then_switch(*args, **kwargs):
        staged = stage(*args, **kwargs)
        if not calls:  # another publisher switches an hour of the day before our renames
            publish_builds(redis_client, layout, [concurrent], PublishOptions(superseded_ttl=60))
        calls.append(staged)
        return staged

    monkeypatch.setattr(cache.days, "_stage", stage_then_switch)
    publish_builds(redis_client, layout, first, PublishOptions(superseded_ttl=60), spec=SPEC)
    day_calls = [staged for staged in calls if any(":day:" in key for key in staged.values())]
    assert len(day_calls) == 2  # the first attempt was abandoned and the day read again
    assert (
        day_hash(redis_client, layout, DAY, "events")[DAY_BUILDS_FIELD]
        == builds_text(DAY, [*first, concurrent]).encode()
    )
    assert numbers(day_hash(redis_client, layout, DAY, "events"))["_"] == 118
    assert not list(redis_client.scan_iter(match=f"{layout.prefix}:*:tmp:*"))
    assert day_keys(redis_client, layout) == expected_day_keys(layout, DAY)


def test_day_and_staged_keys_have_the_right_ttls(redis_client, layout, monkeypatch):
    publish_builds(redis_client, layout, three_hours(), PublishOptions(superseded_ttl=60), spec=SPEC)
    for key in day_keys(redis_client, layout):
        assert redis_client.ttl(key) == -1, key  # live data never expires

    # A rebuild that dies before its renames leaves only expiring temporary keys.
    def crash(self):
        raise RuntimeError("crash")

    monkeypatch.setattr(redis.client.Pipeline, "multi", crash)
    with pytest.raises(RuntimeError, match="crash"):
        rebuild_days(redis_client, layout, SPEC, [DAY])
    leftovers = list(redis_client.scan_iter(match=f"{layout.prefix}:*:tmp:*"))
    assert len(leftovers) == len(expected_day_keys(layout, DAY))
    assert all(0 < redis_client.ttl(key) <= 600 for key in leftovers)


def test_publish_hours_rebuilds_the_days(redis_client, layout, tmp_path: Path):
    hour = at(DAY, 10)
    rollup, stats = rollup_hour_dir(tmp_path, hour), stats_hour_dir(tmp_path, hour)
    rollup.mkdir(parents=True)
    stats.mkdir(parents=True)
    blank = {"event_type": None, "country": None, "platform": None, "sketch": None}
    rows = [
        {**blank, "metric": "events", "value": 2.0},
        {**blank, "metric": "active_users", "value": 2.0, "sketch": sketch(["u1", "u2"])},
    ]
    pq.write_table(pa.Table.from_pylist(rows), rollup / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist([{"rows_read": 2}]), stats / "part-0.parquet")

    publish_hours(redis_client, layout, tmp_path, SPEC, [hour], PublishOptions(superseded_ttl=60))
    build = json.loads(redis_client.hget(layout.pointer(), hour_field(hour)))["build"]
    expected_builds = ",".join([*["-"] * 10, build, *["-"] * 13]).encode()
    assert day_hash(redis_client, layout, DAY, "events") == {"_": b"2", DAY_BUILDS_FIELD: expected_builds}
    assert_estimate(numbers(day_hash(redis_client, layout, DAY, "active_users"))["_"], 2)


def test_day_builds_text():
    assert day_builds_text([None] * 24) == ",".join(["-"] * 24)
    builds = [None] * 24
    builds[0], builds[23] = "aaaa", "ffff"
    assert day_builds_text(builds) == "aaaa," + "-," * 22 + "ffff"
    assert day_builds_text([f"b{h}" for h in range(24)]).split(",") == [f"b{h}" for h in range(24)]
    with pytest.raises(ValueError, match="24 hours"):
        day_builds_text(["a"] * 23)
