"""Publish events (cache.events): exactly one per visible write, in order, in the write's own MULTI/EXEC.

Real Redis: each kind of write (publish of new hours, a revision, a rollback,
pending marks set and cleared, a rehydrate) is made through the production
functions, and the stream is read back. Atomicity is shown on the wire: Redis's
MONITOR sees the XADD queued between the switch's MULTI and EXEC, beside the
pointer writes, so no crash can separate the two.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from cache.client import text
from cache.events import Event, parse_event, read_events
from cache.freshness import mark_pending
from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_builds
from cache.rehydrate import rehydrate
from cache.rollback import rollback_hour
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec
from tests.support.builds import events_build
from tests.support.rollups import write_synthetic_hour

H0 = datetime(2026, 11, 16, 8, tzinfo=UTC)
HOURS = [H0 + timedelta(hours=i) for i in range(4)]
OPTIONS = PublishOptions(superseded_ttl=60)


def stream(client: redis.Redis, layout: KeyLayout) -> list[Event]:
    return [event for _, event in read_events(client, layout)]


def test_each_kind_of_write_appends_exactly_one_event_in_order(redis_client: redis.Redis, layout: KeyLayout) -> None:
    publish_builds(redis_client, layout, [events_build(h, 10) for h in HOURS[:2]], OPTIONS)
    publish_builds(redis_client, layout, [events_build(h, 10) for h in HOURS[:2]], OPTIONS)  # unchanged: no event
    publish_builds(redis_client, layout, [events_build(HOURS[1], 11), events_build(HOURS[2], 5)], OPTIONS)
    rollback_hour(redis_client, layout, HOURS[1])
    mark_pending(redis_client, layout, HOURS, {HOURS[0]: "input changed", HOURS[2]: "input changed"})
    mark_pending(redis_client, layout, HOURS, {HOURS[0]: "input changed", HOURS[2]: "input changed"})  # no change
    mark_pending(redis_client, layout, HOURS, {HOURS[0]: "input changed"})  # clears HOURS[2]
    publish_builds(redis_client, layout, [events_build(HOURS[0], 10)], OPTIONS)  # same build: clears the mark
    events = stream(redis_client, layout)
    hour = [f"2026-11-16T{8 + i:02d}:00:00Z" for i in range(4)]
    assert [(e.type, list(e.hours)) for e in events] == [
        ("published", hour[:2]),
        ("revised", hour[1:3]),
        ("rolled_back", [hour[1]]),
        ("pending", [hour[0], hour[2]]),
        ("pending", [hour[2]]),
        ("pending", [hour[0]]),
    ]
    published, revised, rolled_back, marked, cleared, by_publish = events
    assert published.metrics == ["events"] and published.revised == []
    assert published.builds == {hour[0]: events_build(HOURS[0], 10).build, hour[1]: events_build(HOURS[1], 10).build}
    assert revised.revised == [hour[1]]  # HOURS[2] is new, HOURS[1] replaced served data
    assert rolled_back.builds == {hour[1]: events_build(HOURS[1], 10).build} and rolled_back.revised == [hour[1]]
    assert marked.pending == {hour[0]: "input changed", hour[2]: "input changed"} and marked.cleared == []
    assert cleared.pending == {} and cleared.cleared == [hour[2]]
    assert by_publish.cleared == [hour[0]] and by_publish.metrics == []
    # Each event carries the generation its own transaction set: the last one is the live token.
    assert events[-1].generation == text(redis_client.get(layout.generation()))
    assert len({e.generation for e in events}) == len(events)


def test_a_switch_that_clears_marks_names_them(redis_client: redis.Redis, layout: KeyLayout) -> None:
    publish_builds(redis_client, layout, [events_build(HOURS[0], 1)], OPTIONS)
    mark_pending(redis_client, layout, HOURS[:1], {HOURS[0]: "a newer rollup is not published yet"})
    publish_builds(redis_client, layout, [events_build(HOURS[0], 2)], OPTIONS)
    last = stream(redis_client, layout)[-1]
    assert (last.type, last.cleared, last.revised) == ("revised", ["2026-11-16T08:00:00Z"], ["2026-11-16T08:00:00Z"])
    assert not redis_client.hgetall(layout.pending())


def test_the_event_is_queued_inside_the_switchs_transaction(redis_server: str, layout: KeyLayout) -> None:
    """MONITOR shows what Redis executes: MULTI, the pointer HSET, the XADD, then EXEC (one transaction)."""
    client = redis.Redis.from_url(redis_server)
    watcher = redis.Redis.from_url(redis_server)
    commands: list[str] = []
    ready = threading.Event()
    marker = f"{layout.prefix}:monitor-done"

    def monitor() -> None:
        with watcher.monitor() as session:
            ready.set()
            for entry in session.listen():
                command = entry["command"]
                if marker in command:
                    return
                if layout.prefix in command or command in ("MULTI", "EXEC"):
                    commands.append(command)

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    ready.wait(5)
    publish_builds(client, layout, [events_build(HOURS[0], 3)], OPTIONS)
    client.get(marker)
    thread.join(10)
    names = [c.split()[0].upper() for c in commands]
    multi, exec_ = names.index("MULTI"), len(names) - 1 - names[::-1].index("EXEC")
    inside = commands[multi:exec_]
    assert any(c.startswith("HSET") and layout.pointer() in c for c in inside)
    assert any(c.startswith("XADD") and layout.events() in c for c in inside)
    assert any(c.startswith("SET") and layout.generation() in c for c in inside)
    assert not any(c.startswith("XADD") for c in commands[:multi] + commands[exec_:])
    client.close()
    watcher.close()


def test_rehydrate_says_so_and_the_stream_is_capped(
    redis_client: redis.Redis, layout: KeyLayout, tmp_path: Path
) -> None:
    spec = load_spec(DEFAULT_SPEC_PATH)
    for index, hour in enumerate(HOURS):
        write_synthetic_hour(tmp_path, hour, spec, seed=index)
    rehydrate(redis_client, layout, tmp_path, spec, OPTIONS)
    events = stream(redis_client, layout)
    assert [e.type for e in events] == ["rehydrated"]
    assert len(events[0].hours) == 4 and "new_users" in events[0].metrics
    # About the last N are kept (Redis trims whole stream nodes of 100 entries), the newest always.
    keep = OPTIONS.__class__(superseded_ttl=60, events_keep=5)
    for count in range(250):
        publish_builds(redis_client, layout, [events_build(HOURS[0], 100 + count)], keep)
    entries = redis_client.xrange(layout.events())
    assert 5 <= len(entries) <= 200
    assert parse_event(entries[-1][1]).builds == {"2026-11-16T08:00:00Z": events_build(HOURS[0], 349).build}


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type 'updated'"):
        Event(type="updated", hours=[], metrics=[], generation="g", at="t")
