"""Hours of sample-table events with cohorts worth a retention table, written as rollups (no Spark).

tests/support/rollups.py draws each hour's users from the same 40, so every cohort
would come back at 100%. Here members join over the hours (a signup) and come back
less and less as they age, and while active they view pages, some add to a cart and
fewer buy, so the dashboard's retention heat map, funnel and percentile chart have
distinct numbers to show. A member's country and platform stay fixed, so filters keep
whole members. Each hour's rollups are aggregated by :func:`tests.support.rollups.rollup_table`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tally.core.spec import MetricSpec
from tests.support.rollups import rollup_table, stats_table, write_hour

COUNTRIES = ("US", "DE", "FR", "BR")
PLATFORMS = ("web", "ios", "android")
RETURN_HALF_LIFE_HOURS = 60.0  # how fast a member stops coming back


def member_events(seed: int, hours: int, population: int) -> list[list[dict[str, Any]]]:
    """Each hour's events, oldest hour first: members join at any hour, then return less and less."""
    rng = random.Random(seed)
    members = [(f"m{i}", rng.randrange(hours), rng.choice(COUNTRIES), rng.choice(PLATFORMS)) for i in range(population)]
    by_hour: list[list[dict[str, Any]]] = []
    for hour in range(hours):
        rows: list[dict[str, Any]] = []
        for user, joined, country, platform in members:
            age = hour - joined
            if age < 0:
                continue
            if age > 0 and rng.random() >= 0.01 + 0.12 * math.exp(-age / RETURN_HALF_LIFE_HOURS):
                continue
            session = f"{user}-{hour}"
            kinds = (["signup"] if age == 0 else []) + ["page_view"]
            if rng.random() < 0.45:
                kinds.append("add_to_cart")
                if rng.random() < 0.4:
                    kinds.append("purchase")
            for kind in kinds:
                amount = round(rng.lognormvariate(3.4, 0.7), 2) if kind == "purchase" else None
                row = {"user_id": user, "session_id": session, "event_type": kind, "amount": amount}
                rows.append({**row, "country": country, "platform": platform})
        by_hour.append(rows)
    return by_hour


def write_member_hours(
    data_dir: Path, spec: MetricSpec, hours: Sequence[datetime], *, seed: int, population: int
) -> None:
    """The rollups of every hour, and their statistics (which mark them complete), as the job lays them out."""
    computed_at = datetime(2026, 1, 1, tzinfo=UTC)
    for index, (hour, rows) in enumerate(zip(hours, member_events(seed, len(hours), population), strict=True)):
        stats = stats_table(spec, len(rows), f"fp{index:014d}", computed_at)
        write_hour(data_dir, hour, rollup_table(spec, rows), stats)
