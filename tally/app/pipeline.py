"""The steps `tally_hourly`, `tally_reconcile` and `tally run` share, composed from ``jobs`` and ``cache``.

A run first looks back over hours that were already built (:func:`find_stale`):

* hours whose **input changed** since they were built (late or rewritten files)
  are recomputed in the run's Spark application;
* hours whose **durable rollup never reached Redis** (the job wrote it, then the
  publish failed or the process died) are published again, without Spark.

Both are marked pending in Redis before any work starts, so the API reports
their points as ``complete: false`` until the run's publish replaces them.

The job modules import pyspark, so they are imported inside the functions: the
DAG files and ``tally --help`` stay light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.core.layout import ONE_HOUR, as_utc, format_hour, parse_hour, parse_range_hours
from tally.core.runstats import RunStats
from tally.core.settings import Settings

if TYPE_CHECKING:
    from cache.publish import PublishReport
    from tally.core.compaction import DayCompaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stale:
    """Already built hours that are out of date in Redis, and what brings each back."""

    recompute: list[datetime] = field(default_factory=list)  # input changed since the build
    republish: list[datetime] = field(default_factory=list)  # newer rollup not published

    def to_xcom(self) -> dict[str, list[str]]:
        return {
            "recompute": [format_hour(h) for h in self.recompute],
            "republish": [format_hour(h) for h in self.republish],
        }

    @classmethod
    def from_xcom(cls, value: dict[str, list[str]]) -> Stale:
        return cls([parse_hour(h) for h in value["recompute"]], [parse_hour(h) for h in value["republish"]])


@dataclass(frozen=True)
class Computed:
    """What a run's aggregate step leaves for its publish step (XCom-ready text)."""

    publish: list[str]  # every hour to publish: computed now, or computed earlier and never published
    failed: dict[str, str]  # looked-back hours whose input is broken: left pending, reported
    stats: dict[str, RunStats] = field(default_factory=dict)  # run statistics of the computed hours


def lookback(first_hour: datetime, horizon_hours: int) -> list[datetime]:
    """The ``horizon_hours`` hours before ``first_hour``, oldest first."""
    first_hour = as_utc(first_hour)
    return [first_hour - ONE_HOUR * i for i in range(horizon_hours, 0, -1)]


def missing_inputs(settings: Settings, hour: datetime) -> list[tuple[str, Path]]:
    """(source, folder) of every source whose folder of ``hour`` has not arrived."""
    from tally.core.layout import hour_folder
    from tally.core.spec import load_spec

    spec = load_spec(settings.spec_path)
    folders = [(s.name, hour_folder(settings.data_dir, s.path, as_utc(hour))) for s in spec.sources]
    return [(name, folder) for name, folder in folders if not folder.is_dir()]


def find_stale(settings: Settings, window: Sequence[datetime]) -> Stale:
    """The hours of ``window`` that are out of date in Redis; marks exactly them pending there."""
    from cache.client import connect
    from cache.freshness import INPUT_CHANGED, NOT_PUBLISHED, mark_pending, unpublished_hours
    from cache.keys import KeyLayout
    from jobs.inputs import changed_hours, hour_input_fingerprint, source_fingerprints
    from tally.core.runstats import built_hours
    from tally.core.spec import load_spec

    window = [as_utc(h) for h in window]
    spec = load_spec(settings.spec_path)
    hours_built = built_hours(settings.data_dir, window)
    built = {hour: b.input_fingerprint for hour, b in hours_built.items()}
    changed = changed_hours(settings.data_dir, spec, window, built)
    redefined = [
        hour
        for hour in outdated_hours(hours_built, spec.fingerprints)
        if hour not in changed and hour_input_fingerprint(settings.data_dir, spec, hour) is not None
    ]
    client = connect(settings.redis_url)
    try:
        layout = KeyLayout(settings.redis_prefix)
        unpublished = [h for h in unpublished_hours(client, layout, built) if h not in changed]
        pending = dict.fromkeys(unpublished, NOT_PUBLISHED)
        for hour in changed:
            now = source_fingerprints(settings.data_dir, spec, hour) or {}
            moved = sorted(name for name, fp in now.items() if hours_built[hour].sources.get(name) != fp)
            # With several sources, the mark says whose files changed.
            pending[hour] = (
                INPUT_CHANGED if len(spec.sources) == 1 else f"{INPUT_CHANGED} (sources: {', '.join(moved)})"
            )
        mark_pending(client, layout, window, pending, events_keep=settings.events_keep)
    finally:
        client.close()
    if changed:
        log.info("input changed since they were built, recomputing: %s", [format_hour(h) for h in changed])
    if unpublished:
        log.info("rollups not published yet, publishing: %s", [format_hour(h) for h in unpublished])
    if redefined:
        # Not marked pending: the API already reports exactly the redefined metrics' points incomplete.
        log.info("built under an older definition of a metric, recomputing: %s", [format_hour(h) for h in redefined])
    unpublished = [h for h in unpublished if h not in redefined]
    return Stale(recompute=sorted({*changed, *redefined}), republish=unpublished)


def outdated_hours(built: Mapping[datetime, Any], fingerprints: Mapping[str, str]) -> list[datetime]:
    """Built hours missing a stored metric of the spec, or holding one under another definition.

    ``built`` maps hours to :class:`tally.core.runstats.BuiltHour`; an hour built before
    definitions were recorded counts as current.
    """
    return sorted(
        hour
        for hour, b in built.items()
        if b.definitions and any(b.definitions.get(metric) != fp for metric, fp in fingerprints.items())
    )


def compute(settings: Settings, own: Sequence[datetime], stale: Stale, *, app_name: str) -> Computed:
    """Compute the run's own hours and the stale ones in one Spark application.

    The run's own hours must all compute (raises otherwise, naming the file or
    folder); a looked-back hour whose input is now broken is reported in
    ``failed`` instead, so one bad late file cannot hold back every later hour.
    """
    from jobs.hourly import compute_hours, require_complete

    own = [as_utc(h) for h in own]
    report = compute_hours(settings, sorted({*own, *stale.recompute}), app_name=app_name)
    require_complete(report, own)
    own_texts = {format_hour(h) for h in own}
    publish = sorted({*(format_hour(h) for h in report.computed_hours), *(format_hour(h) for h in stale.republish)})
    failed = {h: why for h, why in {**report.missing, **report.failed}.items() if h not in own_texts}
    log_run_stats(report.computed)
    return Computed(publish=publish, failed=failed, stats=report.computed)


def recompute_range(settings: Settings, start: str, end: str, *, app_name: str) -> list[str]:
    """What ``tally_recompute`` runs: compute every arrived hour in [start, end), as hour texts to publish.

    Hours whose folder is missing are skipped (logged); raises
    :class:`tally.core.layout.HourNotArrivedError` when none arrived and RuntimeError
    naming each hour that failed.
    """
    from jobs.hourly import compute_hours, require_some_arrived

    hours = parse_range_hours(start, end, max_hours=24 * 400)
    report = compute_hours(settings, hours, app_name=app_name)
    log_run_stats(report.computed)
    for hour, why in report.missing.items():
        log.info("skipped %s: %s", hour, why)
    require_some_arrived(report, hours)
    if report.failed:
        raise RuntimeError("some hours failed: " + "; ".join(f"{h}: {w}" for h, w in report.failed.items()))
    return [format_hour(h) for h in report.computed_hours]


def log_run_stats(stats: Mapping[str, RunStats]) -> None:
    """One log line per computed hour with its run statistics (what an Airflow task log shows)."""
    for hour, hour_stats in sorted(stats.items()):
        log.info("run statistics %s: %s", hour, describe_run_stats(hour_stats))


def describe_run_stats(stats: RunStats) -> str:
    """One line: ``rows read 1000, valid 990, invalid 10 (bad_amount 10), duplicates 2, counted 988,
    application 12.3s for 24 hour(s)``."""
    by_reason = sorted(stats.get("invalid_by_reason", {}).items())
    reasons = ", ".join(f"{reason} {count}" for reason, count in by_reason if count)
    parts = [
        f"rows read {stats.get('rows_read')}",
        f"valid {stats.get('valid_rows')}",
        f"invalid {stats.get('invalid_rows')}" + (f" ({reasons})" if reasons else ""),
        f"duplicates {stats.get('duplicate_rows')}",
        f"counted {stats.get('counted_events')}",
        f"application {stats.get('application_seconds')}s for {stats.get('application_hours')} hour(s)",
    ]
    if "input_files" in stats:
        parts.append(f"input files {stats['input_files']}")
    for fold in stats.get("folded_dimensions", []):
        parts.append(
            f"WARNING dimension {fold['dimension']} of {fold['source']}: {fold['distinct_values']} values over "
            f"max_values {fold['max_values']}, {fold['rows_folded']} rows stored as 'other'"
        )
    return ", ".join(parts)


def late_input_problems(failed: dict[str, str]) -> str | None:
    """The message a run fails with after publishing, when looked-back hours could not be recomputed."""
    if not failed:
        return None
    details = "; ".join(f"{hour}: {why}" for hour, why in sorted(failed.items()))
    return (
        f"{len(failed)} earlier hour(s) changed but could not be recomputed; they stay pending "
        f"(complete: false) and keep their previous build until their input is fixed: {details}"
    )


def publish_settings_hours(
    settings: Settings,
    hours: Sequence[datetime],
    *,
    force: bool = False,
    progress: Callable[[Sequence[datetime]], Iterable[datetime]] | None = None,
) -> PublishReport:
    """Publish computed hours using the configured Redis, prefix and spec.

    A cold cache (Redis restarted empty) is rehydrated from the rollups first, so
    the hourly run never publishes one hour into an otherwise empty cache.
    """
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.options import PublishOptions
    from cache.publish import publish_hours
    from cache.rehydrate import is_cold, rehydrate
    from cache.storage import refresh_report
    from tally.app.notify import relay_webhooks
    from tally.core.spec import load_spec

    spec = load_spec(settings.spec_path)
    options = PublishOptions.from_settings(settings)
    client = connect(settings.redis_url)
    try:
        layout = KeyLayout(settings.redis_prefix)
        count = 0
        if is_cold(client, layout):
            count = rehydrate(client, layout, settings.data_dir, spec, options)
            log.warning("Redis had nothing under %r: rehydrated %d hours from the rollups", layout.prefix, count)
        report = publish_hours(
            client, layout, settings.data_dir, spec, hours, replace(options, force=force), progress=progress
        )
        # Measured here, once per publish that changed something: /health and /metrics read this
        # report and never scan Redis; a publish of unchanged hours leaves Redis byte-identical.
        if report.published or count or client.get(layout.storage()) is None:
            refresh_report(
                client,
                layout,
                data_dir=settings.data_dir,
                budget=options.redis_budget_bytes,
                hour_retention_days=settings.hour_retention_days,
            )
        # After the switch, never before it, and never failing it (cache.webhooks).
        return replace(report, rehydrated=count, webhooks=relay_webhooks(client, settings))
    finally:
        client.close()


def publish_hour_texts(hours: Sequence[str]) -> dict[str, Any]:
    """What the DAGs' publish tasks run: publish hours given as text (an XCom), with the settings.

    ``published`` are the hours this task made live, ``revised`` those of them whose new build
    replaced data already served, ``rehydrated`` how many hours a cold prefix was refilled with
    first. The DAGs announce them in their asset event (:mod:`tally.app.assets`).
    """
    from tally.core.settings import get_settings

    if not hours:
        return {"published": [], "unchanged": [], "revised": [], "rehydrated": 0, "webhooks": {}}
    settings = get_settings()
    result = publish_settings_hours(settings, [parse_hour(h) for h in hours])
    published = result.published
    if result.rehydrated:
        # The prefix was empty: the rehydrate made the requested hours live (so the publish found
        # them "unchanged"). They are new to every reader all the same: this task published them.
        published = sorted({*result.published, *result.unchanged})
    unchanged = [hour for hour in result.unchanged if hour not in published]
    revised = revised_hours(settings, published)
    log.info(
        "published: %s (revised: %s); unchanged: %s; rehydrated first: %d hour(s); webhooks: %s",
        published,
        revised,
        unchanged,
        result.rehydrated,
        result.webhooks or "none configured",
    )
    return {
        "published": published,
        "unchanged": unchanged,
        "revised": revised,
        "rehydrated": result.rehydrated,
        "webhooks": result.webhooks,
    }


def revised_hours(settings: Settings, published: Sequence[str]) -> list[str]:
    """Which of the just ``published`` hours are revisions, as their live pointers record it.

    The switch marks a pointer revised exactly when its build replaced one already served,
    so reading the pointers back names the revisions without a second notion of "revised".
    """
    from cache.client import connect
    from cache.keys import KeyLayout
    from cache.reads import read_pointers

    if not published:
        return []
    client = connect(settings.redis_url)
    try:
        pointers = read_pointers(client, KeyLayout(settings.redis_prefix), [parse_hour(h) for h in published])
    finally:
        client.close()
    return [format_hour(hour) for hour, pointer in sorted(pointers.items()) if pointer.revised]


@dataclass(frozen=True)
class RollupUpkeep:
    """What :func:`compact_rollups` did to the durable rollups."""

    expired: list[date]  # days deleted by rollup_retention_days
    compacted: list[DayCompaction]  # days folded into one file each

    def lines(self) -> list[str]:
        """One line per day, for the CLI and the task log."""
        out = [f"expired {day:%Y-%m-%d} (both forms deleted)" for day in self.expired]
        return out + [f"compacted {c.describe()}" for c in self.compacted]


def compact_rollups(settings: Settings, *, now: datetime | None = None, dry_run: bool = False) -> RollupUpkeep:
    """What ``tally_reconcile`` ends with and ``tally compact`` runs: retention, then compaction (no Spark).

    Days older than ``rollup_retention_days`` are deleted first (nothing is compacted only to
    be deleted), then days older than ``compact_after_days`` are compacted; 0 turns either off.
    """
    from tally.core.compaction import compact, expire_rollups

    moment = as_utc(now) if now is not None else datetime.now(UTC)
    expired = expire_rollups(settings.data_dir, moment, settings.rollup_retention_days, dry_run=dry_run)
    compacted = compact(settings.data_dir, moment, settings.compact_after_days, dry_run=dry_run)
    if dry_run:  # the expired days are still there: show what compaction would do to the others
        compacted = [c for c in compacted if c.day not in set(expired)]
    upkeep = RollupUpkeep(expired=expired, compacted=compacted)
    for line in upkeep.lines():
        log.info("%s%s", "dry run: " if dry_run else "", line)
    return upkeep
