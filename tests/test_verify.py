"""Verified publishing: a build that fails a check never goes live; big movements are reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cache.builds import HourBuild, build_id
from cache.options import PublishOptions
from cache.publish import publish_builds, publish_hours
from cache.verify import LiveBuild, VerificationError, movements, problems
from jobs.hourly import run_hours
from tally.core.layout import hour_field, raw_hour_dir
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import dump_prefix, event, write_events

SPEC = load_spec(DEFAULT_SPEC_PATH)
H = datetime(2026, 11, 27, 10, tzinfo=UTC)
GOOD = {
    "rows_read": 5,
    "valid_rows": 4,
    "invalid_rows": 1,
    "duplicate_rows": 1,
    "counted_events": 3,
    "invalid_by_reason": {"missing_user_id": 1},
}


def test_reconciliation_and_zero_checks():
    assert problems("h", GOOD, {"events": 3.0}, None) == []
    assert "rows read (6) != valid (4) + invalid (1)" in problems("h", {**GOOD, "rows_read": 6}, {"events": 3}, None)[0]
    assert "add up to 2, not 1" in problems("h", {**GOOD, "invalid_by_reason": {"a": 1, "b": 1}}, {"e": 3}, None)[0]
    assert "!= counted events" in problems("h", {**GOOD, "counted_events": 4}, {"events": 3}, None)[0]
    assert "every metric total is 0" in problems("h", GOOD, {"events": 0.0, "revenue": 0.0}, None)[0]
    empty = {"rows_read": 0, "valid_rows": 0, "invalid_rows": 0, "duplicate_rows": 0, "counted_events": 0}
    assert problems("h", empty, {"events": 0.0}, None) == []  # a quiet hour is fine
    live = LiveBuild("abc", {"rows_read": 50}, {"events": 50.0})
    assert (
        "input is now empty, but the live build abc was computed from 50 rows"
        in problems("h", empty, {"events": 0.0}, live)[0]
    )


def test_movements_are_reported_both_ways():
    live = LiveBuild("abc", {}, {"events": 100.0, "revenue": 50.0, "orders": 0.0})
    moved = movements({"events": 1500.0, "revenue": 4.0, "orders": 0.0}, live, 10.0)
    assert moved == {
        "events": {"previous": 100.0, "new": 1500.0, "factor": 15.0},
        "revenue": {"previous": 50.0, "new": 4.0, "factor": 12.5},
    }
    assert movements({"events": 900.0}, live, 10.0) == {}


def build(events: float, stats: dict) -> HourBuild:
    values = {"events": {"_": events}}
    return HourBuild(H, build_id(values, {}), values, {}, stats)


def test_a_failed_check_switches_nothing(redis_client, layout):
    publish_builds(redis_client, layout, [build(3, GOOD)], PublishOptions(superseded_ttl=60))
    before = dump_prefix(redis_client, layout)
    with pytest.raises(VerificationError, match="rows read"):
        publish_builds(redis_client, layout, [build(4, {**GOOD, "rows_read": 9})], PublishOptions(superseded_ttl=60))
    assert dump_prefix(redis_client, layout) == before


def test_revisions_are_recorded_with_their_movements(redis_client, layout):
    first = build(3, GOOD)
    publish_builds(redis_client, layout, [first], PublishOptions(superseded_ttl=60))
    bigger = {**GOOD, "rows_read": 61, "valid_rows": 60, "duplicate_rows": 0, "counted_events": 60}
    publish_builds(redis_client, layout, [build(60, bigger)], PublishOptions(superseded_ttl=60, max_movement_factor=10))
    live = json.loads(redis_client.hget(layout.pointer(), hour_field(H)))["build"]
    stats = json.loads(redis_client.get(layout.manifest(live, hour_field(H))))["stats"]
    assert stats["revised_from"] == first.build
    assert stats["movements"] == {"events": {"previous": 3.0, "new": 60.0, "factor": 20.0}}


def test_emptied_input_keeps_the_previous_build_served(spark, redis_client, layout, tmp_path: Path):
    write_events(tmp_path, H, [event("a", "2026-11-27T10:00:00"), event("b", "2026-11-27T10:01:00", user_id="u2")])
    run_hours(spark, tmp_path, SPEC, [H])
    publish_hours(redis_client, layout, tmp_path, SPEC, [H], PublishOptions(superseded_ttl=60))
    before = dump_prefix(redis_client, layout)
    for path in raw_hour_dir(tmp_path, H).glob("*.parquet"):
        path.unlink()  # a producer bug empties the hour
    run_hours(spark, tmp_path, SPEC, [H])
    with pytest.raises(VerificationError, match=r"input is now empty, but the live build .* 2 rows"):
        publish_hours(redis_client, layout, tmp_path, SPEC, [H], PublishOptions(superseded_ttl=60))
    assert dump_prefix(redis_client, layout) == before
    publish_hours(
        redis_client, layout, tmp_path, SPEC, [H], PublishOptions(superseded_ttl=60, force=True)
    )  # on purpose
    assert dump_prefix(redis_client, layout) != before
