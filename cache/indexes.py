"""What a switch writes beside the pointers: the ``{p}:days`` and ``{p}:definitions`` fields.

Both are derived from the pointer hash, a day per field, and must match it
exactly, so they are computed under the switch's WATCH of ``{p}:pointer`` and
written in its MULTI/EXEC (:mod:`cache.switch`, :mod:`cache.rollback`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from cache.builds import HourBuild
from cache.keys import (
    ANY_METRIC,
    HOURS_PER_DAY,
    NOT_COMPUTED,
    KeyLayout,
    day_builds_text,
    day_hours,
    day_index_value,
    definitions_value,
    parse_day_index_value,
    parse_definitions_value,
)
from tally.core.layout import day_field, hour_field


def day_index_after(
    pipe: Any, layout: KeyLayout, changed: Sequence[HourBuild], published_at: str, revised: set[str]
) -> dict[str, str]:
    """The ``{p}:days`` fields of the changed hours' days as they will be after the switch.

    ``revised`` names the changed hours that replace a live build. Read under the
    caller's WATCH of the pointer hash, so the fields match the switch exactly.
    """
    new_build = {hour_field(b.hour): b.build for b in changed}
    fields: dict[str, str] = {}
    for day in sorted({b.hour.astimezone(UTC).date() for b in changed}):
        hours = [hour_field(hour) for hour in day_hours(day)]
        builds: list[str | None] = []
        times: list[str] = []
        flags: list[bool] = []
        for hour, value in zip(hours, pipe.hmget(layout.pointer(), hours), strict=True):
            pointer = json.loads(value) if value else None
            if hour in new_build:
                builds.append(new_build[hour])
                times.append(published_at)
                flags.append(hour in revised)
            elif pointer:
                builds.append(pointer["build"])
                times.append(pointer["published_at"])
                flags.append(bool(pointer.get("revised")))
            else:
                builds.append(None)
                flags.append(False)
        fields[day_field(day)] = day_index_value(day_builds_text(builds), max(times), flags)
    return fields


def day_tier_builds(pipe: Any, layout: KeyLayout, hours: Sequence[datetime]) -> dict[str, tuple[str, bool]]:
    """For hours without a pointer: the build and revised flag their day index entry still names.

    Only hours of days moved to the day tier (:mod:`cache.tiers`) have one; read
    under the caller's WATCH of the pointer hash, which every move changes.
    """
    days = sorted({hour.astimezone(UTC).date() for hour in hours})
    if not days:
        return {}
    wanted = {hour_field(hour) for hour in hours}
    served: dict[str, tuple[str, bool]] = {}
    for day, value in zip(days, pipe.hmget(layout.day_index(), [day_field(day) for day in days]), strict=True):
        if not value:
            continue
        builds_text, _, flags = parse_day_index_value(value.decode() if isinstance(value, bytes) else value)
        for hour, build, flag in zip(day_hours(day), builds_text.split(","), flags, strict=True):
            if hour_field(hour) in wanted and build != "-":
                served[hour_field(hour)] = (build, flag)
    return served


def definitions_after(
    pipe: Any, layout: KeyLayout, hours: Sequence[tuple[datetime, Mapping[str, str]]]
) -> dict[str, str]:
    """The ``{p}:definitions`` fields of the hours' days once each hour holds the given definitions.

    Read under the caller's WATCH of the pointer hash, like :func:`day_index_after`.
    A metric the new build of an hour lacks is marked not computed there.
    """
    by_day: dict[date, list[tuple[int, Mapping[str, str]]]] = {}
    for hour, definitions in hours:
        utc = hour.astimezone(UTC)
        by_day.setdefault(utc.date(), []).append((utc.hour, definitions))
    days = sorted(by_day)
    current = pipe.hmget(layout.definitions(), [day_field(day) for day in days]) if days else []
    fields: dict[str, str] = {}
    for day, value in zip(days, current, strict=True):
        entries = {metric: list(hours) for metric, hours in parse_definitions_value(value).items()}
        for position, definitions in by_day[day]:
            for metric in set(entries) | set(definitions):
                # A metric new to the day holds, in hours of builds that recorded nothing, what any metric does.
                row = entries.setdefault(metric, list(entries.get(ANY_METRIC, [NOT_COMPUTED] * HOURS_PER_DAY)))
                row[position] = definitions.get(metric, definitions.get(ANY_METRIC, NOT_COMPUTED))
        fields[day_field(day)] = definitions_value(entries)
    return fields
