"""The storage report: what Tally holds in Redis and on disk, how fast it grows, and when the budget is reached.

:func:`measure` walks every key under the prefix (SCAN, then MEMORY USAGE in
pipelined batches), sorts each into a tier with :meth:`cache.keys.KeyLayout.classify`
(``hour`` builds, ``day`` aggregates, the ``index`` hashes every reader starts from)
and adds up bytes per tier and metric. A full SCAN costs in proportion to the
keys, so the publisher measures once after each publish and stores the report
under ``{p}:storage`` (:func:`refresh_report`); ``/health`` and ``/metrics`` read
that key only, and ``tally storage`` measures afresh.

Growth per day is what one more day costs: the bytes of the newest complete UTC
day's hour builds plus its day aggregates. When hours leave Redis after
``hour_retention_days`` (``TALLY_HOUR_RETENTION_DAYS`` > 0), what stays for good
is the day aggregates, so the steady-state growth is the day tier alone; the
report says which it used (``growth.basis``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from cache.keys import (
    HOURS_PER_DAY,
    TIER_DAY,
    TIER_HOUR,
    TIER_INDEX,
    KeyInfo,
    KeyLayout,
    parse_published_at,
    pointer_build,
    published_at_text,
)
from tally.core.layout import ROLLUPS_HOURLY

log = logging.getLogger(__name__)

# MEMORY USAGE samples this many fields of a large hash (Redis's own default); small
# hashes (listpacks) are measured exactly whatever the number.
MEMORY_SAMPLES = 5
SCAN_BATCH = 1000
# Bytes in one MB of TALLY_REDIS_BUDGET_MB, as Redis counts maxmemory's "mb".
BYTES_PER_MB = 1024 * 1024
# How many of the newest live hours the mean slices per hour is taken over.
SLICE_HOURS = 24
# /health warns when the budget is reached sooner than this.
BUDGET_WARNING_DAYS = 30.0
# A stored report older than this is measured again before a budget decision.
REPORT_MAX_AGE = timedelta(hours=6)
# The "metric" of bytes no metric owns (manifests, index hashes).
NO_METRIC = ""


@dataclass(frozen=True)
class Growth:
    """What one more day adds to Redis, measured on one day (``day``)."""

    day: str
    complete: bool  # all 24 hours of ``day`` are live; otherwise its bytes are scaled up to 24 hours
    hour_tier_bytes: int
    day_tier_bytes: int
    per_day_bytes: int  # the growth used for days_until_budget
    basis: str  # which of the two it is, in words


@dataclass(frozen=True)
class StorageReport:
    """One measurement of the prefix; :meth:`to_json` is the ``{p}:storage`` document."""

    measured_at: str
    generation: str | None  # {p}:generation when the measurement started
    redis_bytes: int
    keys: int
    # tier -> metric (NO_METRIC for bytes no metric owns) -> bytes
    tier_bytes: dict[str, dict[str, int]]
    used_memory: int | None  # the whole Redis server's, for context (None when the ACL hides INFO)
    slices_per_hour: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> newest, mean
    rollup_bytes: int | None = None
    growth: Growth | None = None
    budget_bytes: int | None = None
    days_until_budget: float | None = None

    @property
    def by_tier(self) -> dict[str, int]:
        return {tier: sum(metrics.values()) for tier, metrics in sorted(self.tier_bytes.items())}

    @property
    def by_metric(self) -> dict[str, dict[str, int]]:
        """Metric -> tier -> bytes (bytes no metric owns left out)."""
        found: dict[str, dict[str, int]] = defaultdict(dict)
        for tier, metrics in sorted(self.tier_bytes.items()):
            for metric, size in sorted(metrics.items()):
                if metric != NO_METRIC:
                    found[metric][tier] = size
        return dict(sorted(found.items()))

    @property
    def warning(self) -> str | None:
        """A sentence when the budget is reached within :data:`BUDGET_WARNING_DAYS`."""
        if self.days_until_budget is None or self.days_until_budget >= BUDGET_WARNING_DAYS:
            return None
        return (
            f"Redis under this prefix reaches its budget (TALLY_REDIS_BUDGET_MB) in {self.days_until_budget:.1f} "
            f"day(s): {self.redis_bytes} of {self.budget_bytes} bytes used"
        )

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["by_tier"] = self.by_tier
        document["by_metric"] = self.by_metric
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> StorageReport:
        growth = document.get("growth")
        return cls(
            measured_at=document["measured_at"],
            generation=document.get("generation"),
            redis_bytes=int(document["redis_bytes"]),
            keys=int(document["keys"]),
            tier_bytes={
                tier: {m: int(n) for m, n in metrics.items()} for tier, metrics in document["tier_bytes"].items()
            },
            used_memory=document.get("used_memory"),
            slices_per_hour=document.get("slices_per_hour") or {},
            rollup_bytes=document.get("rollup_bytes"),
            growth=Growth(**growth) if growth else None,
            budget_bytes=document.get("budget_bytes"),
            days_until_budget=document.get("days_until_budget"),
        )


def budget_bytes(budget_mb: float | None) -> int | None:
    """TALLY_REDIS_BUDGET_MB in bytes (None: no budget)."""
    return None if budget_mb is None else int(budget_mb * BYTES_PER_MB)


def memory_usage(client: redis.Redis, keys: Sequence[str]) -> dict[str, int]:
    """Bytes of each key that exists (MEMORY USAGE, pipelined); a key gone meanwhile is left out."""
    sizes: dict[str, int] = {}
    for start in range(0, len(keys), SCAN_BATCH):
        batch = keys[start : start + SCAN_BATCH]
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=MEMORY_SAMPLES)
            answers = pipe.execute()
        sizes.update({key: int(size) for key, size in zip(batch, answers, strict=True) if size is not None})
    return sizes


def prefix_keys(client: redis.Redis, layout: KeyLayout) -> Iterator[str]:
    """Every key under the prefix (SCAN: never blocks Redis the way KEYS does)."""
    for key in client.scan_iter(match=layout.all_keys_pattern(), count=SCAN_BATCH):
        yield key.decode() if isinstance(key, bytes) else key


def key_sizes(client: redis.Redis, layout: KeyLayout) -> dict[str, int]:
    """Bytes of every key under the prefix."""
    return memory_usage(client, list(prefix_keys(client, layout)))


def prefix_bytes(client: redis.Redis, layout: KeyLayout, exclude: Iterable[str] = ()) -> int:
    """Bytes of every key under the prefix but ``exclude``."""
    skip = set(exclude)
    return sum(size for key, size in key_sizes(client, layout).items() if key not in skip)


def bytes_by_tier_metric(layout: KeyLayout, sizes: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """tier -> metric (:data:`NO_METRIC` for manifests and index hashes) -> bytes."""
    found: dict[str, dict[str, int]] = {TIER_HOUR: {}, TIER_DAY: {}, TIER_INDEX: {}}
    for key, size in sizes.items():
        info = layout.classify(key)
        if info is None:
            continue
        metrics = found.setdefault(info.tier, {})
        metric = info.metric or NO_METRIC
        metrics[metric] = metrics.get(metric, 0) + size
    return found


def rollup_bytes(data_dir: Path) -> int:
    """Bytes of every file under the durable rollups folder (hourly rollups and their statistics)."""
    root = data_dir / ROLLUPS_HOURLY.parent
    if not root.is_dir():
        return 0
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def live_builds(client: redis.Redis, layout: KeyLayout) -> dict[str, str]:
    """Hour field -> its live build, for every published hour."""
    found = {}
    for hour, value in client.hgetall(layout.pointer()).items():
        build = pointer_build(value)
        if build:
            found[hour.decode() if isinstance(hour, bytes) else hour] = build
    return found


def slices_per_hour(
    client: redis.Redis, infos: Mapping[str, KeyInfo], live: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Per metric: slices of its values hash in the newest live hour, and their mean over the newest 24."""
    newest = sorted(live, reverse=True)[:SLICE_HOURS]
    wanted = {(live[hour], hour) for hour in newest}
    values_keys = [
        (info.metric, info.hour, key)
        for key, info in infos.items()
        if info.tier == TIER_HOUR and info.part == "values" and info.metric and info.hour
        if (info.build, info.hour) in wanted
    ]
    with client.pipeline(transaction=False) as pipe:
        for _, _, key in values_keys:
            pipe.hlen(key)
        counts = pipe.execute() if values_keys else []
    per_metric: dict[str, dict[str, int]] = defaultdict(dict)
    for (metric, hour, _), count in zip(values_keys, counts, strict=True):
        per_metric[metric][hour] = int(count)
    return {
        metric: {"newest": float(by_hour[max(by_hour)]), "mean": sum(by_hour.values()) / len(by_hour)}
        for metric, by_hour in sorted(per_metric.items())
    }


def growth_per_day(
    sizes: Mapping[str, int], infos: Mapping[str, KeyInfo], live: Mapping[str, str], hour_retention_days: int
) -> Growth | None:
    """What one more day adds, measured on the newest UTC day whose 24 hours are live (None: nothing live).

    Without a complete day, the newest day with live hours is scaled up to 24 hours.
    """
    hours_per_day: dict[str, int] = defaultdict(int)
    for hour in live:
        hours_per_day[hour[:10]] += 1
    if not hours_per_day:
        return None
    complete = [day for day, count in hours_per_day.items() if count >= HOURS_PER_DAY]
    day = max(complete) if complete else max(hours_per_day)
    scale = 1.0 if complete else HOURS_PER_DAY / hours_per_day[day]
    hour_tier = sum(size for key, size in sizes.items() if infos[key].tier == TIER_HOUR and _day_of(infos[key]) == day)
    day_tier = sum(size for key, size in sizes.items() if infos[key].tier == TIER_DAY and infos[key].day == day)
    hour_tier, day_tier = round(hour_tier * scale), round(day_tier * scale)
    if hour_retention_days > 0:
        per_day = day_tier
        basis = f"day aggregates only: hours leave Redis after {hour_retention_days} days (TALLY_HOUR_RETENTION_DAYS)"
    else:
        per_day = hour_tier + day_tier
        basis = "hour builds + day aggregates: hours stay in Redis (TALLY_HOUR_RETENTION_DAYS=0)"
    if not complete:
        basis += f"; {day} has {hours_per_day[day]} live hour(s), scaled to 24"
    return Growth(day, bool(complete), hour_tier, day_tier, per_day, basis)


def _day_of(info: KeyInfo) -> str | None:
    return info.hour[:10] if info.hour else None


def days_until_budget(budget: int | None, used: int, growth: Growth | None) -> float | None:
    """Days until ``used`` reaches ``budget`` at the growth per day (0 if already over; None: no budget or growth)."""
    if budget is None or growth is None or growth.per_day_bytes <= 0:
        return None
    return max(0.0, (budget - used) / growth.per_day_bytes)


def measure(
    client: redis.Redis,
    layout: KeyLayout,
    *,
    data_dir: Path | None = None,
    budget: int | None = None,
    hour_retention_days: int = 0,
    now: datetime | None = None,
) -> StorageReport:
    """Measure the prefix now (a full SCAN); ``data_dir`` adds the rollups' bytes on disk."""
    generation = client.get(layout.generation())
    sizes = key_sizes(client, layout)
    infos = {key: info for key in sizes if (info := layout.classify(key)) is not None}
    live = live_builds(client, layout)
    growth = growth_per_day(sizes, infos, live, hour_retention_days)
    total = sum(sizes.values())
    return StorageReport(
        measured_at=published_at_text(now or datetime.now(UTC)),
        generation=generation.decode() if isinstance(generation, bytes) else generation,
        redis_bytes=total,
        keys=len(sizes),
        tier_bytes=bytes_by_tier_metric(layout, sizes),
        used_memory=_used_memory(client),
        slices_per_hour=slices_per_hour(client, infos, live),
        rollup_bytes=rollup_bytes(data_dir) if data_dir is not None else None,
        growth=growth,
        budget_bytes=budget,
        days_until_budget=days_until_budget(budget, total, growth),
    )


def _used_memory(client: redis.Redis) -> int | None:
    # The writer's ACL has no INFO (it tells about the whole server): then there is no context figure.
    try:
        return int(client.info("memory")["used_memory"])
    except redis.RedisError:
        return None


def write_report(client: redis.Redis, layout: KeyLayout, report: StorageReport) -> None:
    client.set(layout.storage(), json.dumps(report.to_json(), sort_keys=True))


def read_report(client: redis.Redis, layout: KeyLayout) -> StorageReport | None:
    """The stored report (None when never measured, or written in a form this version cannot read)."""
    raw = client.get(layout.storage())
    if not raw:
        return None
    try:
        return StorageReport.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        log.warning("%s holds no readable storage report; ignoring it", layout.storage())
        return None


def refresh_report(
    client: redis.Redis, layout: KeyLayout, *, data_dir: Path, budget: int | None, hour_retention_days: int
) -> StorageReport | None:
    """Measure and store the report (after a publish); a failure is logged, never fails the publish."""
    try:
        report = measure(client, layout, data_dir=data_dir, budget=budget, hour_retention_days=hour_retention_days)
        write_report(client, layout, report)
    except redis.RedisError as exc:
        log.warning("could not measure Redis storage under %r: %s", layout.prefix, exc)
        return None
    return report


def current_bytes(
    client: redis.Redis, layout: KeyLayout, exclude: Iterable[str] = (), now: datetime | None = None
) -> int:
    """Bytes under the prefix now: the stored report's while it is current, else measured (but ``exclude``).

    A report is current while nothing a reader sees has changed since (the same
    ``{p}:generation``) and it is younger than :data:`REPORT_MAX_AGE`. Keys in
    ``exclude`` (a publish's staged keys) are written after any such report.
    """
    report = read_report(client, layout)
    if report is not None and report.generation is not None:
        generation = client.get(layout.generation())
        current = generation.decode() if isinstance(generation, bytes) else generation
        age = (now or datetime.now(UTC)) - parse_published_at(report.measured_at)
        if current == report.generation and age < REPORT_MAX_AGE:
            return report.redis_bytes
    return prefix_bytes(client, layout, exclude)
