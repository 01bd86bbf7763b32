"""The Redis key layout is a contract: these strings are pinned."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cache.keys import (
    DAY_BUILDS_FIELD,
    TOTAL_SLICE,
    KeyLayout,
    day_hours,
    day_index_value,
    parse_day_index_value,
    pointer_value,
    slice_id,
    slice_labels,
)
from tally.core.layout import day_field, hour_field

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
    assert layout.pending() == "tally:pending"
    assert layout.published_rollups() == "tally:rollups"


def test_pointer_and_day_index_values_are_pinned():
    assert pointer_value("abc", "2026-11-27T11:05:00.000000Z", revised=False) == (
        '{"build": "abc", "published_at": "2026-11-27T11:05:00.000000Z"}'
    )
    assert pointer_value("abc", "t", revised=True) == '{"build": "abc", "published_at": "t", "revised": true}'
    builds = ",".join(["-"] * 23 + ["abc"])
    flags = [False] * 10 + [True] + [False] * 13
    value = day_index_value(builds, "t", flags)
    assert value == f"{builds}|t|{'0' * 10}1{'0' * 13}"
    assert parse_day_index_value(value) == (builds, "t", tuple(flags))
    # Entries written before revised flags existed read as "none revised".
    assert parse_day_index_value(f"{builds}|t") == (builds, "t", (False,) * 24)
    with pytest.raises(ValueError, match="24 hours"):
        day_index_value(builds, "t", flags[:-1])


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


def test_definitions_index_names_each_metrics_fingerprint_per_hour():
    from cache.keys import NOT_COMPUTED, definitions_value, parse_definitions_value

    assert KeyLayout("tally").definitions() == "tally:definitions"
    uniform = definitions_value({"revenue": ["abc"] * 24, "gone": [NOT_COMPUTED] * 24})
    assert uniform == '{"revenue":"abc"}'  # a day that agrees is one entry; metrics no hour holds are left out
    mixed = ["old"] * 12 + ["new"] * 11 + [NOT_COMPUTED]
    text = definitions_value({"orders": mixed})
    assert text == '{"orders":"' + ",".join(mixed) + '"}'
    assert parse_definitions_value(text) == {"orders": tuple(mixed)}
    assert parse_definitions_value(uniform) == {"revenue": ("abc",) * 24}
    assert parse_definitions_value(None) == {}
