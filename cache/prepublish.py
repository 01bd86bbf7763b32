"""The pre-publish step: builds about to replace live ones are checked against them first.

The checks themselves are pure (:mod:`cache.verify`); this reads what they need
from Redis (the replaced builds' statistics and totals) and notes in each new
build's statistics what it revises and how far its totals moved.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import redis

from cache.builds import HourBuild
from cache.keys import TOTAL_SLICE, KeyLayout, pointer_build
from cache.verify import LiveBuild, VerificationError, movements, problems, totals_of
from tally.core.layout import format_hour, hour_field

log = logging.getLogger(__name__)


def verified(
    client: redis.Redis,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    current: dict[str, Any],
    max_factor: float,
    force: bool,
) -> list[HourBuild]:
    """The builds with revision notes added; raises VerificationError before anything is written.

    ``current`` maps each build's hour field to its ``{p}:pointer`` value now.
    """
    live = live_builds(client, layout, builds, current)
    found: list[str] = []
    checked = []
    for build in builds:
        hour = format_hour(build.hour)
        previous = live.get(build.hour)
        totals = totals_of(build.values)
        found += problems(hour, build.stats, totals, previous)
        stats = dict(build.stats)
        if previous is not None:
            stats["revised_from"] = previous.build
            moved = movements(totals, previous, max_factor)
            if moved:
                stats["movements"] = moved
                log.warning("hour %s: totals moved by more than x%s: %s", hour, max_factor, moved)
        checked.append(replace(build, stats=stats))
    if found and not force:
        raise VerificationError("; ".join(found))
    return checked


def live_builds(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], current: dict[str, Any]
) -> dict[datetime, LiveBuild]:
    """Statistics and totals of the builds about to be replaced."""
    replaced = [(b.hour, old) for b in builds if (old := pointer_build(current[hour_field(b.hour)]))]
    with client.pipeline(transaction=False) as pipe:
        for hour, old in replaced:
            pipe.get(layout.manifest(old, hour_field(hour)))
        manifests = pipe.execute() if replaced else []
    with client.pipeline(transaction=False) as pipe:
        for (hour, old), manifest in zip(replaced, manifests, strict=True):
            for metric in json.loads(manifest)["metrics"] if manifest else {}:
                pipe.hget(layout.values(old, hour_field(hour), metric), TOTAL_SLICE)
        totals_raw = pipe.execute() if replaced else []
    live: dict[datetime, LiveBuild] = {}
    position = 0
    for (hour, old), manifest in zip(replaced, manifests, strict=True):
        document = json.loads(manifest) if manifest else {"metrics": {}, "stats": {}}
        totals = {}
        for metric in document["metrics"]:
            raw = totals_raw[position]
            position += 1
            totals[metric] = float(raw) if raw is not None else 0.0
        live[hour] = LiveBuild(old, document.get("stats", {}), totals)
    return live
