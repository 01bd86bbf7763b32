"""The Redis key layout is a contract: these strings are pinned."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cache.keys import (
    DAY_BUILDS_FIELD,
    TOTAL_SLICE,
    KeyLayout,
    day_field,
    day_hours,
    hour_field,
    slice_id,
    slice_labels,
)

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_key_strings_are_pinned():
    layout = KeyLayout("tally")
    hour = hour_field(HOUR)
    assert hour == "2026-11-27T10Z"
    assert layout.pointer() == "tally:pointer"
    assert layout.meta() == "tally:meta"
    assert layout.history(hour) == "tally:history:2026-11-27T10Z"
    assert layout.manifest("abc123", hour) == "tally:b:abc123:2026-11-27T10Z:manifest"
    assert layout.values("abc123", hour, "revenue") == "tally:b:abc123:2026-11-27T10Z:revenue:values"
    assert layout.sketches("abc123", hour, "active_users") == "tally:b:abc123:2026-11-27T10Z:active_users:sketches"
    assert layout.all_keys_pattern() == "tally:*"
    day = day_field(date(2026, 11, 27))
    assert day == "2026-11-27"
    assert layout.day_values(day, "revenue") == "tally:day:2026-11-27:revenue:values"
    assert layout.day_sketches(day, "active_users") == "tally:day:2026-11-27:active_users:sketches"
    assert (
        layout.temporary("tally:day:2026-11-27:revenue:values", "ab12")
        == "tally:day:2026-11-27:revenue:values:tmp:ab12"
    )
    assert DAY_BUILDS_FIELD == "@builds"


def test_prefix_is_applied_everywhere():
    layout = KeyLayout("other")
    keys = [
        layout.pointer(),
        layout.meta(),
        layout.manifest("b", "h"),
        layout.values("b", "h", "m"),
        layout.sketches("b", "h", "m"),
        layout.day_values("d", "m"),
        layout.day_sketches("d", "m"),
    ]
    assert all(k.startswith("other:") and "::" not in k for k in keys)


def test_hour_field_uses_utc():
    from datetime import timedelta, timezone

    local = datetime(2026, 11, 27, 11, tzinfo=timezone(timedelta(hours=1)))
    assert hour_field(local) == "2026-11-27T10Z"


def test_day_hours_are_the_utc_hours_of_the_day():
    hours = day_hours(date(2026, 11, 27))
    assert [hour_field(h) for h in (hours[0], hours[23])] == ["2026-11-27T00Z", "2026-11-27T23Z"]
    assert len(hours) == len({hour_field(h) for h in hours}) == 24
    assert all(h.tzinfo is UTC for h in hours)


def test_slice_ids_are_canonical():
    assert slice_id({}) == TOTAL_SLICE == "_"
    assert slice_id({"platform": "web", "country": "US"}) == "country=US,platform=web"
    assert slice_id({"country": "US", "platform": "web"}) == "country=US,platform=web"


@pytest.mark.parametrize("value", ["a:b", "*", "a,b=c", "../x", "日本", "with space", "%41", "", "x\x00y"])
def test_slice_values_cannot_escape_their_field(value):
    text = slice_id({"country": value, "platform": "web"})
    assert text.count(",") == 1 and text.count("=") == 2 and ":" not in text and "*" not in text
    assert slice_labels(text) == {"country": value, "platform": "web"}
