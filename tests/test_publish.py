"""Publishing to Redis: atomic switch, idempotence, and failures that leave the live state intact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from cache.builds import HourBuild, build_id
from cache.client import RedisUnavailableError, connect
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds, publish_hours
from cache.rollback import rollback_hour
from jobs.hourly import run_hours
from tally.core.layout import hour_field
from tally.core.rollup import NotComputedError
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.conftest import dump_prefix, event, write_events

H10 = datetime(2026, 11, 27, 10, tzinfo=UTC)
H11 = datetime(2026, 11, 27, 11, tzinfo=UTC)
SPEC = load_spec(DEFAULT_SPEC_PATH)


def build(hour: datetime, events: float, sketch: bytes = b"\x01\x02") -> HourBuild:
    values = {"events": {"_": events, "country=US": events}, "active_users": {"_": 1.0}}
    sketches = {"active_users": {"_": sketch}}
    return HourBuild(hour, build_id(values, sketches), values, sketches, {"rows_read": int(events)})


def live_value(client: redis.Redis, layout: KeyLayout, hour: datetime, metric: str, slice_text: str) -> bytes | None:
    pointer = client.hget(layout.pointer(), hour_field(hour))
    build_name = json.loads(pointer)["build"]
    return client.hget(layout.values(build_name, hour_field(hour), metric), slice_text)


def test_publish_switches_pointer_and_expires_the_superseded_build(redis_client, layout):
    first = build(H10, 5)
    report = publish_builds(redis_client, layout, [first, build(H11, 7)], PublishOptions(superseded_ttl=60))
    assert report.published == ["2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"]
    assert live_value(redis_client, layout, H10, "events", "country=US") == b"5"
    old_key = layout.values(first.build, hour_field(H10), "events")
    assert redis_client.ttl(old_key) == -1  # live keys never expire

    second = build(H10, 6)
    publish_builds(redis_client, layout, [second], PublishOptions(superseded_ttl=60, keep_builds=2))
    assert live_value(redis_client, layout, H10, "events", "_") == b"6"
    assert redis_client.ttl(old_key) == -1  # still kept: the previous build, for rollback
    assert redis_client.lrange(layout.history(hour_field(H10)), 0, -1) == [second.build.encode(), first.build.encode()]
    publish_builds(redis_client, layout, [build(H10, 8)], PublishOptions(superseded_ttl=60, keep_builds=2))
    assert 0 < redis_client.ttl(old_key) <= 60  # fell out of the history: readers mid-request can still finish
    assert redis_client.ttl(layout.values(second.build, hour_field(H10), "events")) == -1
    assert redis_client.hget(layout.meta(), "newest_hour") == b"2026-11-27T11Z"


def test_rollback_serves_the_previous_build_again(redis_client, layout):
    first, second = build(H10, 5), build(H10, 6)
    publish_builds(redis_client, layout, [first], PublishOptions(superseded_ttl=60))
    assert b"revised" not in redis_client.hget(layout.pointer(), hour_field(H10))  # first publish: not a revision
    publish_builds(redis_client, layout, [second], PublishOptions(superseded_ttl=60))
    assert b'"revised": true' in redis_client.hget(layout.pointer(), hour_field(H10))
    assert rollback_hour(redis_client, layout, H10) == first.build
    assert live_value(redis_client, layout, H10, "events", "_") == b"5"
    assert b'"revised": true' in redis_client.hget(layout.pointer(), hour_field(H10))  # served data changed again
    day_entry = redis_client.hget(layout.day_index(), "2026-11-27")
    assert day_entry.startswith(b"-," * 10 + first.build.encode())
    assert day_entry.endswith(b"|" + b"0" * 10 + b"1" + b"0" * 13)
    assert rollback_hour(redis_client, layout, H10) == second.build  # and forward again
    assert live_value(redis_client, layout, H10, "events", "_") == b"6"
    with pytest.raises(NotComputedError, match="no earlier build kept"):
        rollback_hour(redis_client, layout, H11)


def test_publishing_the_same_hour_twice_leaves_identical_state(redis_client, layout):
    publish_builds(redis_client, layout, [build(H10, 5)], PublishOptions(superseded_ttl=60))
    before = dump_prefix(redis_client, layout)
    report = publish_builds(redis_client, layout, [build(H10, 5)], PublishOptions(superseded_ttl=60))
    assert report.published == [] and report.unchanged == ["2026-11-27T10:00:00Z"]
    assert dump_prefix(redis_client, layout) == before


def test_newest_hour_only_moves_forward(redis_client, layout):
    publish_builds(redis_client, layout, [build(H11, 1)], PublishOptions(superseded_ttl=60))
    publish_builds(redis_client, layout, [build(H10, 1)], PublishOptions(superseded_ttl=60))
    assert redis_client.hget(layout.meta(), "newest_hour") == b"2026-11-27T11Z"


def test_publish_from_rollups_and_missing_rollup_leaves_live_state(spark, redis_client, layout, tmp_path: Path):
    write_events(tmp_path, H10, [event("a", "2026-11-27T10:00:00"), event("b", "2026-11-27T10:05:00", user_id="u2")])
    run_hours(spark, tmp_path, SPEC, [H10])
    publish_hours(redis_client, layout, tmp_path, SPEC, [H10], PublishOptions(superseded_ttl=60))
    assert live_value(redis_client, layout, H10, "active_users", "_") == b"2"
    manifest = json.loads(
        redis_client.get(
            layout.manifest(json.loads(redis_client.hget(layout.pointer(), hour_field(H10)))["build"], hour_field(H10))
        )
    )
    assert manifest["stats"]["rows_read"] == 2 and "country=US" in manifest["metrics"]["events"]
    assert manifest["stats"]["invalid_by_reason"]["missing_user_id"] == 0
    before = dump_prefix(redis_client, layout)
    # H11 was never computed: nothing is switched, not even H10 again.
    with pytest.raises(NotComputedError, match="2026-11-27T11:00:00Z has no complete rollup"):
        publish_hours(redis_client, layout, tmp_path, SPEC, [H10, H11], PublishOptions(superseded_ttl=60))
    assert dump_prefix(redis_client, layout) == before


def test_unreachable_redis_is_a_clear_error():
    with pytest.raises(RedisUnavailableError, match=r"Redis at redis://:\*\*\*@127.0.0.1:1/0 is unreachable"):
        connect("redis://:secret@127.0.0.1:1/0", timeout=0.5)
