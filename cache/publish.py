"""Publish hourly rollups from the durable Parquet store to Redis, atomically.

A publish writes each hour's new *build* under fresh keys, then switches the
hours' entries in the pointer hash in one MULTI/EXEC and gives the superseded
builds a short TTL, so a reader sees the previous state or the new one, never a
mix. Build ids are content hashes: republishing unchanged data is a no-op.

After a switch, the day hashes of the switched hours' UTC days are rebuilt from
the days' live builds (:func:`rebuild_days`), so a reader can union a day's one
sketch instead of its 24 hourly ones. A day hash names the builds it was made
from; readers trust it only while those are still live, so a stale or missing
day hash costs speed, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import redis

from cache import sketches as sketches_
from cache.keys import (
    ANY_METRIC,
    DAY_BUILDS_FIELD,
    HOURS_PER_DAY,
    NOT_COMPUTED,
    TOTAL_SLICE,
    UNRECORDED,
    KeyLayout,
    day_builds_text,
    day_field,
    day_hours,
    day_index_value,
    definitions_value,
    hour_field,
    mark_changed,
    parse_definitions_value,
    pointer_value,
    published_at_text,
    slice_id,
)
from cache.verify import LiveBuild, VerificationError, movements, problems, totals_of
from tally.core.faults import checkpoint
from tally.core.layout import as_utc, computed_hours, format_hour, rollup_hour_dir, stats_hour_dir
from tally.core.runstats import combine, source_row
from tally.core.settings import Settings
from tally.core.spec import MetricSpec

log = logging.getLogger(__name__)

# Builds of an hour kept readable (the live one included), so `tally rollback` can go back.
KEEP_BUILDS: int = Settings.model_fields["history_builds"].default
# New build keys carry this TTL until the switch persists them, so a publish
# that dies half-way leaves nothing behind for long.
UNSWITCHED_TTL_SECONDS = 24 * 3600
# A day hash is written under a temporary key with this TTL and renamed over the
# live one; a rebuild that dies before the rename leaves nothing behind for long.
STAGED_DAY_TTL_SECONDS = 600


class NotComputedError(RuntimeError):
    """The hour has no complete rollup to publish."""


@dataclass(frozen=True)
class HourBuild:
    """Everything one hour publishes: values and sketches per metric and slice."""

    hour: datetime
    build: str
    values: dict[str, dict[str, float]]
    sketches: dict[str, dict[str, bytes]]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishReport:
    published: list[str]
    unchanged: list[str]
    # Hours published from the rollups first because the prefix was empty (publish_settings_hours).
    rehydrated: int = 0


def build_id(
    values: dict[str, dict[str, float]],
    sketches: dict[str, dict[str, bytes]],
    definitions: Mapping[str, str] | None = None,
) -> str:
    """A content hash of an hour's published data and the metric definitions it was computed under.

    Not of its statistics: a rerun of the same input is the same build. A changed
    definition is a new build even where its numbers happen to be the same.
    """
    digest = hashlib.sha256()
    for metric, fingerprint in sorted((definitions or {}).items()):
        digest.update(f"d|{metric}|{fingerprint}\n".encode())
    for metric in sorted(values):
        for slice_text in sorted(values[metric]):
            digest.update(f"v|{metric}|{slice_text}|{values[metric][slice_text]!r}\n".encode())
    for metric in sorted(sketches):
        for slice_text in sorted(sketches[metric]):
            digest.update(f"s|{metric}|{slice_text}|".encode())
            digest.update(sketches[metric][slice_text])
    return digest.hexdigest()[:16]


def hour_build_from_rows(
    hour: datetime, rows: Iterable[dict[str, Any]], dimensions: Sequence[str], stats: dict[str, Any]
) -> HourBuild:
    """Group rollup rows (metric, dimension columns, value, sketch) into a build."""
    values: dict[str, dict[str, float]] = {}
    sketches: dict[str, dict[str, bytes]] = {}
    for row in rows:
        labels = {dim: row[dim] for dim in dimensions if row.get(dim) is not None}
        key = slice_id(labels)
        values.setdefault(row["metric"], {})[key] = float(row["value"])
        if row.get("sketch") is not None:
            sketches.setdefault(row["metric"], {})[key] = bytes(row["sketch"])
    definitions = stats.get("metric_fingerprints") or None
    return HourBuild(hour, build_id(values, sketches, definitions), values, sketches, stats)


def read_hour_build(data_dir: Path, hour: datetime, spec: MetricSpec) -> HourBuild:
    """Read one hour's rollup and statistics from the durable store."""
    stats_dir = stats_hour_dir(data_dir, hour)
    rollup_dir = rollup_hour_dir(data_dir, hour)
    # The statistics are written after the rollup, so they mark it complete.
    if not any(stats_dir.glob("*.parquet")) or not rollup_dir.is_dir():
        raise NotComputedError(
            f"hour {format_hour(hour)} has no complete rollup under {rollup_dir}; run `tally run --hour` for it first"
        )
    stats = combine([source_row(row) for row in pq.read_table(stats_dir).to_pylist()])
    rows = pq.read_table(rollup_dir).to_pylist()
    return hour_build_from_rows(hour, rows, spec.dimensions, stats)


def publish_builds(
    client: redis.Redis,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    *,
    superseded_ttl: int,
    now: datetime | None = None,
    spec: MetricSpec | None = None,
    max_movement_factor: float = 10.0,
    force: bool = False,
    keep_builds: int = KEEP_BUILDS,
) -> PublishReport:
    """Make ``builds`` live in one atomic switch; unchanged hours are left alone.

    The last ``keep_builds`` builds of each hour stay readable (for rollback);
    older ones get ``superseded_ttl`` so readers mid-request can finish.

    Every changed build is verified first (:mod:`cache.verify`); one failure
    switches nothing (unless ``force``). Movements against the live build are
    logged and kept in the new build's statistics; a replaced build is recorded
    as ``revised_from``. With ``spec``, the day hashes of the switched hours' days
    are then rebuilt.
    """
    published_at = published_at_text(now or datetime.now(UTC))
    hours = [hour_field(b.hour) for b in builds]
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(layout.pointer())
                current = dict(zip(hours, pipe.hmget(layout.pointer(), hours), strict=True))
                changed = [b for b in builds if _live_build(current[hour_field(b.hour)]) != b.build]
                if not changed:
                    pipe.unwatch()
                    if _record_published(client, layout, builds):
                        mark_changed(client, layout)  # cleared pending marks change `complete`
                    return PublishReport(published=[], unchanged=[format_hour(b.hour) for b in builds])
                changed = _verified(client, layout, changed, current, max_movement_factor, force)
                new_keys = _write_build_keys(client, layout, changed, published_at)
                checkpoint("publish:before-switch")
                histories, evicted = _histories_after(client, layout, changed, current, keep_builds)
                old_keys = [key for hour, build in evicted for key in _build_keys(client, layout, build, hour)]
                # Replacing data that was already served makes the hour a revision, for good.
                revised = {hour_field(b.hour) for b in changed if current[hour_field(b.hour)] is not None}
                day_index = _day_index_after(pipe, layout, changed, published_at, revised)
                definitions = _definitions_after(pipe, layout, [(b.hour, build_definitions(b)) for b in changed])
                pipe.multi()
                for hour, history in histories.items():
                    pipe.delete(layout.history(hour))
                    pipe.rpush(layout.history(hour), *history)
                for build in changed:
                    hour = hour_field(build.hour)
                    pipe.hset(layout.pointer(), hour, pointer_value(build.build, published_at, revised=hour in revised))
                pipe.hset(layout.day_index(), mapping=day_index)
                pipe.hset(layout.definitions(), mapping=definitions)
                _record_published(pipe, layout, builds)
                mark_changed(pipe, layout)
                for key in new_keys:
                    pipe.persist(key)
                for key in old_keys:
                    pipe.expire(key, superseded_ttl)
                pipe.hset(layout.meta(), "published_at", published_at)
                _queue_advance_newest_hour(pipe, layout, max(hour_field(b.hour) for b in changed))
                pipe.execute()
                break
            except redis.WatchError:
                log.info("pointer changed during publish; retrying")
    checkpoint("publish:before-days")
    if spec is not None:
        rebuild_days(client, layout, spec, {b.hour.astimezone(UTC).date() for b in changed})
    switched = {b.hour for b in changed}
    return PublishReport(
        published=[format_hour(b.hour) for b in changed],
        unchanged=[format_hour(b.hour) for b in builds if b.hour not in switched],
    )


def _record_published(client: Any, layout: KeyLayout, builds: Sequence[HourBuild]) -> Any:
    """The builds' rollups are what is live now: record them, and clear the hours' pending marks.

    ``client`` is a client, or a pipeline whose MULTI/EXEC these writes join.
    Returns how many pending marks were cleared (from a client; a pipeline queues it).
    """
    fingerprints = {
        hour_field(b.hour): b.stats["input_fingerprint"] for b in builds if b.stats.get("input_fingerprint")
    }
    if fingerprints:
        client.hset(layout.published_rollups(), mapping=fingerprints)
    return client.hdel(layout.pending(), *[hour_field(b.hour) for b in builds])


def _verified(
    client: redis.Redis,
    layout: KeyLayout,
    builds: Sequence[HourBuild],
    current: dict[str, Any],
    max_factor: float,
    force: bool,
) -> list[HourBuild]:
    """The builds with revision notes added; raises VerificationError before anything is written."""
    live = _live_builds(client, layout, builds, current)
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


def _live_builds(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], current: dict[str, Any]
) -> dict[datetime, LiveBuild]:
    """Statistics and totals of the builds about to be replaced."""
    replaced = [(b.hour, _live_build(current[hour_field(b.hour)])) for b in builds]
    replaced = [(hour, old) for hour, old in replaced if old]
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


def _day_index_after(
    pipe: Any, layout: KeyLayout, changed: Sequence[HourBuild], published_at: str, revised: set[str]
) -> dict[str, str]:
    """The ``{p}:days`` fields of the changed hours' days as they will be after the switch.

    ``revised`` names the changed hours that replace a live build. Read under the
    caller's WATCH of the pointer hash, so the fields match the switch exactly.
    """
    new_build = {hour_field(b.hour): b.build for b in changed}
    fields: dict[str, str] = {}
    for day in sorted({b.hour.astimezone(UTC).date() for b in changed}):
        hours = [hour_field(hour) for hour in day_hours(day)]
        builds: list[str | None] = []
        times: list[str] = []
        flags: list[bool] = []
        for hour, value in zip(hours, pipe.hmget(layout.pointer(), hours), strict=True):
            pointer = json.loads(value) if value else None
            if hour in new_build:
                builds.append(new_build[hour])
                times.append(published_at)
                flags.append(hour in revised)
            elif pointer:
                builds.append(pointer["build"])
                times.append(pointer["published_at"])
                flags.append(bool(pointer.get("revised")))
            else:
                builds.append(None)
                flags.append(False)
        fields[day_field(day)] = day_index_value(day_builds_text(builds), max(times), flags)
    return fields


def build_definitions(build: HourBuild) -> dict[str, str]:
    """Metric -> the definition fingerprint a build computed it under (``?`` before they were recorded)."""
    recorded = build.stats.get("metric_fingerprints")
    if recorded:
        return {metric: str(fingerprint) for metric, fingerprint in dict(recorded).items()}
    # Which metrics such a build holds is not known either: any metric counts as computed there.
    return {ANY_METRIC: UNRECORDED}


def _definitions_after(
    pipe: Any, layout: KeyLayout, hours: Sequence[tuple[datetime, Mapping[str, str]]]
) -> dict[str, str]:
    """The ``{p}:definitions`` fields of the hours' days once each hour holds the given definitions.

    Read under the caller's WATCH of the pointer hash, like :func:`_day_index_after`.
    A metric the new build of an hour lacks is marked not computed there.
    """
    by_day: dict[date, list[tuple[int, Mapping[str, str]]]] = {}
    for hour, definitions in hours:
        utc = hour.astimezone(UTC)
        by_day.setdefault(utc.date(), []).append((utc.hour, definitions))
    days = sorted(by_day)
    current = pipe.hmget(layout.definitions(), [day_field(day) for day in days]) if days else []
    fields: dict[str, str] = {}
    for day, value in zip(days, current, strict=True):
        entries = {metric: list(hours) for metric, hours in parse_definitions_value(value).items()}
        for position, definitions in by_day[day]:
            for metric in set(entries) | set(definitions):
                # A metric new to the day holds, in hours of builds that recorded nothing, what any metric does.
                row = entries.setdefault(metric, list(entries.get(ANY_METRIC, [NOT_COMPUTED] * HOURS_PER_DAY)))
                row[position] = definitions.get(metric, definitions.get(ANY_METRIC, NOT_COMPUTED))
        fields[day_field(day)] = definitions_value(entries)
    return fields


def rebuild_days(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, days: Iterable[date]) -> None:
    """Recompute the day hashes of ``days`` from their hours' live builds, each day in one switch.

    A day with no computed hour loses its day hashes.
    """
    for day in sorted(set(days)):
        _rebuild_day(client, layout, spec, day)


def _rebuild_day(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day: date) -> None:
    hours = [hour_field(hour) for hour in day_hours(day)]
    with client.pipeline(transaction=True) as pipe:
        while True:
            staged: dict[str, str] = {}
            try:
                # If a pointer moves before the renames, they are not applied and the
                # day is read again, so a concurrent publish cannot be overwritten by
                # an older state of the day.
                pipe.watch(layout.pointer())
                builds = [_live_build(value) for value in pipe.hmget(layout.pointer(), hours)]
                day_hashes = _aggregate_day(client, layout, spec, day, hours, builds) if any(builds) else {}
                staged = _stage(client, layout, day_hashes)
                pipe.multi()
                for temporary, key in staged.items():
                    pipe.rename(temporary, key)
                    pipe.persist(key)  # RENAME keeps the temporary key's TTL
                stale = [key for key in _day_keys(layout, spec, day) if key not in day_hashes]
                if stale:
                    pipe.delete(*stale)
                # No new generation: a day aggregate holds the same builds' data as the hours
                # it was made from, so no answer a reader may have kept is out of date.
                pipe.execute()
                return
            except redis.WatchError:
                if staged:
                    client.delete(*staged)
                log.info("pointer changed while rebuilding day %s; retrying", day_field(day))


def _aggregate_day(
    client: redis.Redis,
    layout: KeyLayout,
    spec: MetricSpec,
    day: date,
    hours: Sequence[str],
    builds: Sequence[str | None],
) -> dict[str, dict[str, str | bytes]]:
    """The day's hashes (day key -> fields, ``@builds`` included) from the hours' builds."""
    computed = [(hour, build) for hour, build in zip(hours, builds, strict=True) if build is not None]
    with client.pipeline(transaction=False) as pipe:
        for metric in spec.stored:
            # Hourly distinct estimates cannot be combined; their sketches can.
            key = layout.sketches if metric.is_distinct else layout.values
            for hour, build in computed:
                pipe.hgetall(key(build, hour, metric.name))
        replies = pipe.execute()
    builds_field = {DAY_BUILDS_FIELD: day_builds_text(builds)}
    day_text = day_field(day)
    hashes: dict[str, dict[str, str | bytes]] = {}
    for index, metric in enumerate(spec.stored):
        hour_hashes = replies[index * len(computed) : (index + 1) * len(computed)]
        if metric.is_distinct:
            estimates, sketches = _union_hours(hour_hashes, spec.sketch_lg_k)
            hashes[layout.day_values(day_text, metric.name)] = {**estimates, **builds_field}
            hashes[layout.day_sketches(day_text, metric.name)] = {**sketches, **builds_field}
        else:
            hashes[layout.day_values(day_text, metric.name)] = {**_sum_hours(hour_hashes), **builds_field}
    return hashes


def _sum_hours(hour_hashes: Sequence[dict[bytes, bytes]]) -> dict[str, str | bytes]:
    """Slice -> encoded sum over the hours (fsum, as readers sum hours)."""
    addends: dict[bytes, list[float]] = {}
    for fields in hour_hashes:
        for slice_text, value in fields.items():
            addends.setdefault(slice_text, []).append(float(value))
    return {slice_text.decode(): _encode(math.fsum(values)) for slice_text, values in addends.items()}


def _union_hours(
    hour_hashes: Sequence[dict[bytes, bytes]], lg_k: int
) -> tuple[dict[str, str | bytes], dict[str, str | bytes]]:
    """Slice -> union estimate (unrounded) and slice -> serialized union sketch."""
    blobs: dict[bytes, list[bytes]] = {}
    for fields in hour_hashes:
        for slice_text, blob in fields.items():
            blobs.setdefault(slice_text, []).append(blob)
    unions = {slice_text: sketches_.union_of(parts, lg_k) for slice_text, parts in blobs.items()}
    estimates: dict[str, str | bytes] = {}
    sketches: dict[str, str | bytes] = {}
    for slice_text, union in unions.items():
        estimates[slice_text.decode()] = repr(float(union.get_estimate()))
        sketches[slice_text.decode()] = sketches_.union_image(union)
    return estimates, sketches


def _stage(client: redis.Redis, layout: KeyLayout, hashes: dict[str, dict[str, str | bytes]]) -> dict[str, str]:
    """Write each hash under a temporary key that expires; return temporary key -> day key."""
    token = secrets.token_hex(8)
    staged = {layout.temporary(key, token): key for key in hashes}
    with client.pipeline(transaction=False) as pipe:
        for temporary, key in staged.items():
            pipe.hset(temporary, mapping=hashes[key])
            pipe.expire(temporary, STAGED_DAY_TTL_SECONDS)
        pipe.execute()
    return staged


def _day_keys(layout: KeyLayout, spec: MetricSpec, day: date) -> list[str]:
    """Every day key a spec's metrics could have (a kind change leaves the other one stale)."""
    day_text = day_field(day)
    keys = []
    for metric in spec.stored:
        keys += [layout.day_values(day_text, metric.name), layout.day_sketches(day_text, metric.name)]
    return keys


def _live_build(pointer_value: bytes | None) -> str | None:
    return json.loads(pointer_value)["build"] if pointer_value else None


def _write_build_keys(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], published_at: str
) -> list[str]:
    """Write the builds under their own keys (not yet visible); return the keys."""
    written: list[str] = []
    with client.pipeline(transaction=False) as pipe:
        for build in builds:
            hour = hour_field(build.hour)
            manifest = {
                "hour": format_hour(build.hour),
                "build": build.build,
                "published_at": published_at,
                "metrics": {m: sorted(slices) for m, slices in build.values.items()},
                "stats": build.stats,
            }
            keys_and_values: list[tuple[str, dict[str, Any]]] = []
            for metric, slices in build.values.items():
                keys_and_values.append((layout.values(build.build, hour, metric), slices))
            for metric, slices in build.sketches.items():
                keys_and_values.append((layout.sketches(build.build, hour, metric), slices))
            for key, mapping in keys_and_values:
                pipe.delete(key)
                if mapping:
                    pipe.hset(key, mapping={k: _encode(v) for k, v in mapping.items()})
                    pipe.expire(key, UNSWITCHED_TTL_SECONDS)
                    written.append(key)
            manifest_key = layout.manifest(build.build, hour)
            pipe.set(manifest_key, json.dumps(manifest, sort_keys=True), ex=UNSWITCHED_TTL_SECONDS)
            written.append(manifest_key)
        pipe.execute()
    return written


def _histories_after(
    client: redis.Redis, layout: KeyLayout, builds: Sequence[HourBuild], current: dict[str, Any], keep: int
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Each hour's kept builds after the switch (live first), and the (hour, build) pairs dropped."""
    with client.pipeline(transaction=False) as pipe:
        for build in builds:
            pipe.lrange(layout.history(hour_field(build.hour)), 0, -1)
        kept_now = pipe.execute()
    histories: dict[str, list[str]] = {}
    evicted: list[tuple[str, str]] = []
    for build, raw in zip(builds, kept_now, strict=True):
        hour = hour_field(build.hour)
        history = [b.decode() for b in raw]
        live = _live_build(current[hour])
        if live and live not in history:  # published before histories were kept
            history.insert(0, live)
        history = [build.build, *[b for b in history if b != build.build]]
        histories[hour] = history[:keep]
        evicted += [(hour, old) for old in history[keep:]]
    return histories, evicted


def _build_keys(client: redis.Redis, layout: KeyLayout, build: str, hour: str) -> list[str]:
    """Every key of one hour's build (its manifest lists the metrics)."""
    manifest = client.get(layout.manifest(build, hour))
    metrics = json.loads(manifest)["metrics"] if manifest else {}
    keys = [layout.manifest(build, hour)]
    for metric in metrics:
        keys += [layout.values(build, hour, metric), layout.sketches(build, hour, metric)]
    return keys


def rollback_hour(
    client: redis.Redis,
    layout: KeyLayout,
    hour: datetime,
    *,
    spec: MetricSpec | None = None,
    now: datetime | None = None,
) -> str:
    """Make the hour's previous kept build live again (one atomic switch); return its id."""
    published_at = published_at_text(now or datetime.now(UTC))
    hour = as_utc(hour)
    field_name = hour_field(hour)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(layout.pointer())
                history = [b.decode() for b in pipe.lrange(layout.history(field_name), 0, -1)]
                if len(history) < 2 or not pipe.exists(layout.manifest(history[1], field_name)):
                    raise NotComputedError(f"hour {format_hour(hour)} has no earlier build kept to roll back to")
                previous = history[1]
                manifest = json.loads(pipe.get(layout.manifest(previous, field_name)))
                rolled_back = [
                    HourBuild(hour, previous, {m: {} for m in manifest["metrics"]}, {}, manifest.get("stats", {}))
                ]
                day_index = _day_index_after(pipe, layout, rolled_back, published_at, {field_name})
                definitions = _definitions_after(pipe, layout, [(hour, build_definitions(rolled_back[0]))])
                pipe.multi()
                pipe.hset(layout.pointer(), field_name, pointer_value(previous, published_at, revised=True))
                pipe.delete(layout.history(field_name))
                pipe.rpush(layout.history(field_name), previous, *[b for b in history if b != previous])
                pipe.hset(layout.day_index(), mapping=day_index)
                pipe.hset(layout.definitions(), mapping=definitions)
                pipe.hset(layout.meta(), "published_at", published_at)
                mark_changed(pipe, layout)
                pipe.execute()
                break
            except redis.WatchError:
                log.info("pointer changed during rollback; retrying")
    if spec is not None:
        rebuild_days(client, layout, spec, [hour.date()])
    return previous


def _queue_advance_newest_hour(pipe: Any, layout: KeyLayout, candidate: str) -> None:
    # Hour fields sort as text; only move forward, whatever order hours publish in.
    pipe.eval(
        "local cur = redis.call('HGET', KEYS[1], 'newest_hour') "
        "if (not cur) or cur < ARGV[1] then redis.call('HSET', KEYS[1], 'newest_hour', ARGV[1]) end",
        1,
        layout.meta(),
        candidate,
    )


def _encode(value: float | bytes) -> bytes | str:
    if isinstance(value, bytes):
        return value
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def publish_hours(
    client: redis.Redis,
    layout: KeyLayout,
    data_dir: Path,
    spec: MetricSpec,
    hours: Sequence[datetime],
    *,
    superseded_ttl: int,
    max_movement_factor: float = 10.0,
    force: bool = False,
    keep_builds: int = KEEP_BUILDS,
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
    return publish_builds(
        client,
        layout,
        builds,
        superseded_ttl=superseded_ttl,
        spec=spec,
        max_movement_factor=max_movement_factor,
        force=force,
        keep_builds=keep_builds,
    )


def rehydrate(
    client: redis.Redis,
    layout: KeyLayout,
    data_dir: Path,
    spec: MetricSpec,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    superseded_ttl: int,
    chunk_hours: int = 24 * 7,
) -> int:
    """Re-publish every durably computed hour in [start, end) from the rollups; return the count.

    Redis is only a cache of the rollups: after a flush or a restart with no data,
    this brings back exactly what was published (build ids are content hashes).
    Hours are switched a week at a time to bound memory.
    """
    hours = [h for h in computed_hours(data_dir) if (start is None or h >= start) and (end is None or h < end)]
    for first in range(0, len(hours), chunk_hours):
        publish_hours(client, layout, data_dir, spec, hours[first : first + chunk_hours], superseded_ttl=superseded_ttl)
    return len(hours)


def is_cold(client: redis.Redis, layout: KeyLayout) -> bool:
    """True when nothing is published under the prefix (a fresh or flushed Redis)."""
    return not client.exists(layout.meta())
