"""Publish hourly rollups from the durable Parquet store to Redis: the entry point.

A publish reads each hour's rollup (:func:`cache.builds.read_hour_build`),
writes the hours' new builds and switches them live atomically
(:mod:`cache.switch`), then rebuilds the day hashes of the switched hours' UTC
days (:mod:`cache.days`). Build ids are content hashes: republishing unchanged
data is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from cache.builds import HourBuild, read_hour_build
from cache.days import rebuild_days
from cache.keys import KeyLayout, published_at_text
from cache.options import PublishOptions
from cache.switch import switch_builds
from tally.core.faults import checkpoint
from tally.core.layout import as_utc, format_hour
from tally.core.spec import MetricSpec


@dataclass(frozen=True)
class PublishReport:
    published: list[str]
    unchanged: list[str]
    # Hours published from the rollups first because the prefix was empty (publish_settings_hours).
    rehydrated: int = 0


def publish_builds(
    client: redis.Redis,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    options: PublishOptions,
    *,
    now: datetime | None = None,
    spec: MetricSpec | None = None,
) -> PublishReport:
    """Make ``builds`` live in one atomic switch; unchanged hours are left alone.

    The last ``options.keep_builds`` builds of each hour stay readable (for
    rollback); older ones get ``options.superseded_ttl`` so readers mid-request
    can finish.

    Every changed build is verified first (:mod:`cache.verify`); one failure
    switches nothing (unless ``options.force``). Movements against the live build
    are logged and kept in the new build's statistics; a replaced build is
    recorded as ``revised_from``. With ``spec``, the day hashes of the switched
    hours' days are then rebuilt.
    """
    changed = switch_builds(client, layout, builds, options, published_at_text(now or datetime.now(UTC)))
    if not changed:
        return PublishReport(published=[], unchanged=[format_hour(b.hour) for b in builds])
    checkpoint("publish:before-days")
    if spec is not None:
        rebuild_days(client, layout, spec, {b.hour.astimezone(UTC).date() for b in changed})
    switched = {b.hour for b in changed}
    return PublishReport(
        published=[format_hour(b.hour) for b in changed],
        unchanged=[format_hour(b.hour) for b in builds if b.hour not in switched],
    )


def publish_hours(
    client: redis.Redis,
    layout: KeyLayout,
    data_dir: Path,
    spec: MetricSpec,
    hours: Sequence[datetime],
    options: PublishOptions,
    *,
    progress: Callable[[Sequence[datetime]], Iterable[datetime]] | None = None,
) -> PublishReport:
    """Read the hours' rollups from the durable store and publish them in one switch.

    Every hour must have a complete rollup (NotComputedError otherwise); nothing is
    switched unless all of them can be read. ``progress`` wraps the hours as they
    are read (the CLI's progress bar).
    """
    builds = [read_hour_build(data_dir, as_utc(hour), spec) for hour in (progress or list)(hours)]
    if not builds:
        return PublishReport(published=[], unchanged=[])
    return publish_builds(client, layout, builds, options, spec=spec)
