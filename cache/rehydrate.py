"""Rehydrate: bring an empty or flushed Redis back from the durable rollups.

Redis is only a cache of the rollups: republishing every computed hour brings
back exactly what was published (build ids are content hashes).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import redis

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from tally.core.rollup import computed_hours
from tally.core.spec import MetricSpec


def rehydrate(
    client: redis.Redis,
    layout: KeyLayout,
    data_dir: Path,
    spec: MetricSpec,
    options: PublishOptions,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk_hours: int = 24 * 7,
) -> int:
    """Re-publish every durably computed hour in [start, end) from the rollups; return the count.

    Hours are switched a week at a time to bound memory.
    """
    hours = [h for h in computed_hours(data_dir) if (start is None or h >= start) and (end is None or h < end)]
    for first in range(0, len(hours), chunk_hours):
        publish_hours(client, layout, data_dir, spec, hours[first : first + chunk_hours], options)
    return len(hours)


def is_cold(client: redis.Redis, layout: KeyLayout) -> bool:
    """True when nothing is published under the prefix (a fresh or flushed Redis)."""
    return not client.exists(layout.meta())
