"""Publish hourly rollups from the durable Parquet store to Redis: the entry point.

A publish reads each hour's rollup (:func:`cache.builds.read_hour_build`),
writes the hours' new builds and switches them live atomically
(:mod:`cache.switch`), then rebuilds the day hashes of the switched hours' UTC
days (:mod:`cache.days`). Build ids are content hashes: republishing unchanged
data is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

from cache.builds import HourBuild, read_hour_build
from cache.days import rebuild_days
from cache.keys import KeyLayout, day_hours, published_at_text
from cache.options import PublishOptions
from cache.switch import switch_builds
from cache.tiers import enforce_tiers, hours_from, move_day, restore_days
from tally.core.faults import checkpoint
from tally.core.layout import as_utc, format_hour
from tally.core.rollup import is_complete
from tally.core.spec import MetricSpec


@dataclass(frozen=True)
class PublishReport:
    published: list[str]
    unchanged: list[str]
    # Hours published from the rollups first because the prefix was empty (publish_settings_hours).
    rehydrated: int = 0
    # What relaying the publish events to the webhooks did (cache.webhooks); empty without webhooks.
    webhooks: dict[str, int] = field(default_factory=dict)


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
    switched unless all of them can be read. Then the tiers of ``options`` are kept
    (:func:`cache.tiers.enforce_tiers`): days older than the hour tier leave it. ``progress`` wraps the hours as they
    are read (the CLI's progress bar).
    """
    hours = [as_utc(hour) for hour in hours]
    # An hour of a day in the day tier brings its whole day back: the aggregate is rebuilt from
    # every computed hour of it (the others are no longer in Redis), then the day moves again.
    restored = restore_days({hour.date() for hour in hours}, hours_from(client, layout))
    hours = sorted({*hours, *[h for day in restored for h in day_hours(day) if is_complete(data_dir, h)]})
    builds = [read_hour_build(data_dir, hour, spec) for hour in (progress or list)(hours)]
    if not builds:
        return PublishReport(published=[], unchanged=[])
    report = publish_builds(client, layout, builds, options, spec=spec)
    for day in restored:
        move_day(client, layout, spec, day, options.superseded_ttl)
    enforce_tiers(
        client,
        layout,
        spec,
        hour_retention_days=options.hour_retention_days,
        day_retention_days=options.day_retention_days,
        superseded_ttl=options.superseded_ttl,
    )
    return report
