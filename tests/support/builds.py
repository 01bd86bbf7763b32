"""Hour builds as the job hands them to the publisher, for tests that publish without Spark."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cache.builds import HourBuild, build_id


def hour_build(
    hour: datetime,
    values: dict[str, dict[str, float]],
    sketches: dict[str, dict[str, bytes]] | None = None,
    stats: dict[str, Any] | None = None,
) -> HourBuild:
    """An hour's build whose id is derived from its content, as the job derives it."""
    sketches = sketches or {}
    return HourBuild(hour, build_id(values, sketches), values, sketches, stats or {})


def events_build(hour: datetime, events: float, stats: dict[str, Any] | None = None) -> HourBuild:
    """An hour whose only metric is ``events``, unsliced."""
    return hour_build(hour, {"events": {"_": events}}, stats=stats)
