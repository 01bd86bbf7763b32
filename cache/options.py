"""How a publish is tuned: the options every publish, rehydrate and switch takes."""

from __future__ import annotations

from dataclasses import dataclass

from cache.storage import budget_bytes
from tally.core.settings import Settings

# Builds of an hour kept readable (the live one included), so `tally rollback` can go back.
KEEP_BUILDS: int = Settings.model_fields["history_builds"].default
MAX_MOVEMENT_FACTOR: float = Settings.model_fields["max_movement_factor"].default
# Publish events the {p}:events stream keeps (about a year of hourly publishes, a few MB).
EVENTS_KEEP: int = Settings.model_fields["events_keep"].default


@dataclass(frozen=True)
class PublishOptions:
    """What a publish does besides writing the builds.

    ``superseded_ttl``: seconds a build that falls out of the kept ones stays
    readable, so readers mid-request can finish. ``max_movement_factor``: a total
    moving by more than this against the live build is reported. ``keep_builds``:
    builds of each hour kept readable for rollback, the live one included.
    ``force``: publish even if a pre-publish check fails (never from the settings:
    it is one command's choice). ``redis_budget_bytes``: the bytes Tally may hold
    under its prefix (``TALLY_REDIS_BUDGET_MB``); a publish that would go over it
    fails verification (:func:`cache.prepublish.refuse_over_budget`). None: no budget.
    ``hour_retention_days`` / ``day_retention_days``: the tiers (:mod:`cache.tiers`)
    that :func:`cache.publish.publish_hours` and rehydrate keep after switching; 0
    keeps hours (days) forever, the default for a publish not configured by settings.
    ``events_keep``: publish events the ``{p}:events`` stream keeps (:mod:`cache.events`);
    ``rehydrating``: the switches are a rehydrate's (their events say ``rehydrated``).
    """

    superseded_ttl: int
    max_movement_factor: float = MAX_MOVEMENT_FACTOR
    keep_builds: int = KEEP_BUILDS
    force: bool = False
    redis_budget_bytes: int | None = None
    hour_retention_days: int = 0
    day_retention_days: int = 0
    events_keep: int = EVENTS_KEEP
    rehydrating: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PublishOptions:
        """The configured options (``force`` off)."""
        return cls(
            superseded_ttl=settings.superseded_ttl_seconds,
            max_movement_factor=settings.max_movement_factor,
            keep_builds=settings.history_builds,
            redis_budget_bytes=budget_bytes(settings.redis_budget_mb),
            hour_retention_days=settings.hour_retention_days,
            day_retention_days=settings.day_retention_days,
            events_keep=settings.events_keep,
        )
