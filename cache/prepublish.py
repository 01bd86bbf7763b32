"""The pre-publish step: builds about to replace live ones are checked against them first.

The checks themselves are pure (:mod:`cache.verify`); this reads what they need
from Redis (the replaced builds' statistics and totals) and notes in each new
build's statistics what it revises and how far its totals moved.

With a Redis budget (``TALLY_REDIS_BUDGET_MB``), the builds are staged
(:func:`stage_builds`) and measured before the switch (:func:`refuse_over_budget`):
a publish that would go over the budget removes what it staged and switches
nothing.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import redis

from cache import storage
from cache.builds import HourBuild, write_build_keys
from cache.keys import TOTAL_SLICE, KeyLayout, pointer_build
from cache.options import PublishOptions
from cache.verify import LiveBuild, VerificationError, movements, over_budget, problems, totals_of
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


@dataclass(frozen=True)
class Staged:
    """A publish's build keys, written and not yet live.

    ``previous``: the keys that existed before they were written (a build kept
    for rollback, published again), with their DUMP and PTTL, so a refused
    publish can put them back exactly as they were.
    """

    keys: list[str]
    previous: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    @property
    def added(self) -> list[str]:
        """The keys this publish created."""
        return [key for key in self.keys if key not in self.previous]


def stage_builds(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], published_at: str, options: PublishOptions
) -> Staged:
    """Write the builds' keys (not yet live); with a budget, first note which of them already exist."""
    previous = _snapshot(client, _build_key_names(layout, builds)) if options.redis_budget_bytes is not None else {}
    return Staged(write_build_keys(client, layout, builds, published_at), previous)


def refuse_over_budget(
    client: redis.Redis,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    staged: Staged,
    superseded: Sequence[str],
    options: PublishOptions,
) -> None:
    """Raise VerificationError (the staged keys removed) when the switch would exceed ``options.redis_budget_bytes``.

    What the publish adds is the MEMORY USAGE of the keys it created, less the
    builds it pushes out of the kept histories (``superseded``); what is there is
    the prefix's bytes (:func:`cache.storage.current_bytes`). ``options.force``
    publishes anyway, with a warning.
    """
    budget = options.redis_budget_bytes
    if budget is None:
        return
    added = storage.memory_usage(client, staged.added)
    removed = storage.memory_usage(client, list(superseded))
    growth: dict[str, int] = defaultdict(int)
    for sizes, sign in ((added, 1), (removed, -1)):
        for key, size in sizes.items():
            info = layout.classify(key)
            growth[(info.metric if info else None) or ""] += sign * size
    hours = sorted(format_hour(b.hour) for b in builds)
    problem = over_budget(hours, storage.current_bytes(client, layout, exclude=staged.added), growth, budget)
    if problem is None:
        return
    if options.force:
        log.warning("publishing anyway (--force): %s", problem)
        return
    unstage(client, staged)
    raise VerificationError(problem)


def unstage(client: redis.Redis, staged: Staged) -> None:
    """Remove the keys a refused publish created and put back the ones it overwrote."""
    with client.pipeline(transaction=False) as pipe:
        if staged.added:
            pipe.delete(*staged.added)
        for key, (payload, ttl) in staged.previous.items():
            pipe.restore(key, max(ttl, 0), payload, replace=True)
        pipe.execute()


def _build_key_names(layout: KeyLayout, builds: Sequence[HourBuild]) -> list[str]:
    """The keys :func:`cache.builds.write_build_keys` writes for ``builds``."""
    keys = []
    for build in builds:
        hour = hour_field(build.hour)
        keys += [layout.values(build.build, hour, metric) for metric in build.values]
        keys += [layout.sketches(build.build, hour, metric) for metric in build.sketches]
        keys.append(layout.manifest(build.build, hour))
    return keys


def _snapshot(client: redis.Redis, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
    """DUMP and PTTL (-1: none) of each of ``keys`` that exists."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.dump(key)
            pipe.pttl(key)
        answers = pipe.execute() if keys else []
    found = {}
    for position, key in enumerate(keys):
        payload, ttl = answers[2 * position], answers[2 * position + 1]
        if payload is not None:
            found[key] = (payload, int(ttl))
    return found
