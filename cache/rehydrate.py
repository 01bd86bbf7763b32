"""Rehydrate: bring an empty or flushed Redis back from the durable rollups.

Redis is only a cache of the rollups: republishing every computed hour brings
back exactly what was published (build ids are content hashes).
"""

from __future__ import annotations

from dataclasses import replace
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

    Hours are switched a week of UTC days at a time to bound memory, and each week
    leaves Redis in the tiers ``options`` configure (as every publish does).
    """
    hours = [h for h in computed_hours(data_dir) if (start is None or h >= start) and (end is None or h < end)]
    # Whole UTC days per chunk: each publish then keeps the tiers (publish_hours), so a day
    # older than the hour tier is moved whole, and Redis never holds more than a chunk beyond them.
    days = sorted({hour.date() for hour in hours})
    rehydrating = replace(options, rehydrating=True)  # its switches' events say `rehydrated`
    step = max(1, chunk_hours // 24)
    for first in range(0, len(days), step):
        chunk = set(days[first : first + step])
        publish_hours(client, layout, data_dir, spec, [h for h in hours if h.date() in chunk], rehydrating)
    return len(hours)


def is_cold(client: redis.Redis, layout: KeyLayout) -> bool:
    """True when nothing is published under the prefix (a fresh or flushed Redis)."""
    return not client.exists(layout.meta())
