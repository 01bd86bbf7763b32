"""Day aggregates: each UTC day's hashes, rebuilt from its hours' live builds; and week aggregates.

After a switch, the day hashes of the switched hours' days are rebuilt
(:func:`rebuild_days`), so a reader can read a day's one hash (or union its one
sketch) instead of its 24 hourly ones. A day hash names the builds it was made
from; readers trust it only while those are still live, so a stale or missing
day hash costs speed, never correctness. The week hashes of theta metrics
(:mod:`cache.weeks`) are rebuilt from the day hashes right after, on the same terms.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import date

import redis

from cache import merges
from cache.builds import encode
from cache.client import hash_fields, text
from cache.keys import DAY_BUILDS_FIELD, KeyLayout, day_builds_text, day_hours, parse_day_index_value, pointer_build
from cache.weeks import WEEK_DAYS_FIELD, has_weeks, week_days, week_days_text, week_of
from tally.core.layout import day_field, hour_field
from tally.core.spec import Metric, MetricSpec

log = logging.getLogger(__name__)

# A day hash is written under a temporary key with this TTL and renamed over the
# live one; a rebuild that dies before the rename leaves nothing behind for long.
STAGED_DAY_TTL_SECONDS = 600


def rebuild_days(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, days: Iterable[date]) -> None:
    """Recompute the day hashes of ``days`` from their hours' live builds, each day in one switch.

    A day with no computed hour loses its day hashes. Then the week hashes of the
    weeks those days belong to are rebuilt from their day hashes.
    """
    rebuilt = sorted(set(days))
    for day in rebuilt:
        _rebuild_day(client, layout, spec, day)
    if any(has_weeks(metric) for metric in spec.stored):
        for monday in sorted({week_of(day) for day in rebuilt}):
            _rebuild_week(client, layout, spec, monday)


def _rebuild_day(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day: date) -> None:
    hours = [hour_field(hour) for hour in day_hours(day)]

    def day_hashes(pipe: redis.client.Pipeline) -> dict[str, dict[str, str | bytes]]:
        builds = [pointer_build(value) for value in pipe.hmget(layout.pointer(), hours)]
        return _aggregate_day(client, layout, spec, day, hours, builds) if any(builds) else {}

    # If a pointer moves before the renames, they are not applied and the day is read
    # again, so a concurrent publish cannot be overwritten by an older state of the day.
    _replace(client, layout, layout.pointer(), day_hashes, day_keys(layout, spec, day), f"day {day_field(day)}")


def _replace(
    client: redis.Redis,
    layout: KeyLayout,
    watched: str,
    compute: Callable[[redis.client.Pipeline], dict[str, dict[str, str | bytes]]],
    keys: Sequence[str],
    what: str,
) -> None:
    """Write ``compute``'s hashes whole (staged, then renamed in one MULTI/EXEC), delete the rest of ``keys``.

    ``compute`` reads under a WATCH of ``watched``; if that key changes before the
    renames, nothing is applied and everything is read again.
    """
    with client.pipeline(transaction=True) as pipe:
        while True:
            staged: dict[str, str] = {}
            try:
                pipe.watch(watched)
                hashes = compute(pipe)
                staged = _stage(client, layout, hashes)
                pipe.multi()
                for temporary, key in staged.items():
                    pipe.rename(temporary, key)
                    pipe.persist(key)  # RENAME keeps the temporary key's TTL
                stale = [key for key in keys if key not in hashes]
                if stale:
                    pipe.delete(*stale)
                # No new generation: an aggregate holds the same builds' data as what it was
                # made from, so no answer a reader may have kept is out of date.
                pipe.execute()
                return
            except redis.WatchError:
                if staged:
                    client.delete(*staged)
                log.info("%s changed while rebuilding %s; retrying", watched, what)


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
            # Hourly distinct estimates (and quantiles) cannot be combined; their sketches can.
            key = layout.sketches if metric.has_sketch else layout.values
            for hour, build in computed:
                pipe.hgetall(key(build, hour, metric.name))
        replies = pipe.execute()
    builds_field = {DAY_BUILDS_FIELD: day_builds_text(builds)}
    day_text = day_field(day)
    hashes: dict[str, dict[str, str | bytes]] = {}
    for index, metric in enumerate(spec.stored):
        hour_hashes = replies[index * len(computed) : (index + 1) * len(computed)]
        if metric.has_sketch:
            estimates, sketches = _merge_hours(metric, hour_hashes, spec.sketch_lg_k)
            hashes[layout.day_values(day_text, metric.name)] = {**estimates, **builds_field}
            hashes[layout.day_sketches(day_text, metric.name)] = {**sketches, **builds_field}
        else:
            combined = _combine_hours(metric, hour_hashes)
            hashes[layout.day_values(day_text, metric.name)] = {**combined, **builds_field}
    return hashes


def _combine_hours(metric: Metric, hour_hashes: Sequence[dict[bytes, bytes]]) -> dict[str, str | bytes]:
    """Slice -> the hours' numbers combined (fsum, min or max, as readers combine hours)."""
    numbers: dict[bytes, list[float]] = {}
    for fields in hour_hashes:
        for slice_text, value in fields.items():
            numbers.setdefault(slice_text, []).append(float(value))
    combined = {text.decode(): merges.combine_numbers(metric.merge, found) for text, found in numbers.items()}
    return {text: encode(value) for text, value in combined.items() if value is not None}


def _merge_hours(
    metric: Metric, hour_hashes: Sequence[dict[bytes, bytes]], lg_k: int
) -> tuple[dict[str, str | bytes], dict[str, str | bytes]]:
    """Slice -> the merged sketch's value (unrounded) and slice -> the serialized merged sketch."""
    blobs: dict[bytes, list[bytes]] = {}
    for fields in hour_hashes:
        for slice_text, blob in fields.items():
            blobs.setdefault(slice_text, []).append(blob)
    estimates: dict[str, str | bytes] = {}
    sketches: dict[str, str | bytes] = {}
    for slice_text, parts in blobs.items():
        combined = merges.merge_blobs(metric, parts, lg_k)
        estimates[slice_text.decode()] = repr(merges.summary_value(metric, combined))
        sketches[slice_text.decode()] = merges.image(metric, combined)
    return estimates, sketches


def _rebuild_week(client: redis.Redis, layout: KeyLayout, spec: MetricSpec, monday: date) -> None:
    """Union the week's day sketches of each theta metric into its week hash, in one switch.

    Built only from day hashes whose ``@builds`` equal the day index, under a WATCH
    of the index (every switch writes it), so a week hash is never made of days a
    reader would not use. A week with a day not computed, or whose day hashes are
    not yet rebuilt (a concurrent publish will rebuild the week after them), loses
    its week hashes: readers then read its days.
    """
    day_fields = [day_field(day) for day in week_days(monday)]

    def week_hashes(pipe: redis.client.Pipeline) -> dict[str, dict[str, str | bytes]]:
        entries = pipe.hmget(layout.day_index(), day_fields)
        if any(entry is None for entry in entries):
            return {}
        texts = [parse_day_index_value(text(entry))[0] for entry in entries if entry is not None]
        return _aggregate_week(client, layout, spec, day_fields, texts)

    _replace(client, layout, layout.day_index(), week_hashes, week_keys(layout, spec, monday), f"week {day_fields[0]}")


def _aggregate_week(
    client: redis.Redis, layout: KeyLayout, spec: MetricSpec, day_fields: Sequence[str], texts: Sequence[str]
) -> dict[str, dict[str, str | bytes]]:
    """Week key -> slice -> the union of the days' sketches (plus ``@days``); empty if a day hash is stale."""
    metrics = [metric for metric in spec.stored if has_weeks(metric)]
    with client.pipeline(transaction=False) as pipe:
        for metric in metrics:
            for day in day_fields:
                pipe.hgetall(layout.day_sketches(day, metric.name))
        replies = pipe.execute()
    days_field = {WEEK_DAYS_FIELD: week_days_text(texts)}
    hashes: dict[str, dict[str, str | bytes]] = {}
    for index, metric in enumerate(metrics):
        day_hashes = replies[index * len(day_fields) : (index + 1) * len(day_fields)]
        blobs: dict[bytes, list[bytes]] = {}
        for fields, expected in zip(day_hashes, texts, strict=True):
            recorded = fields.pop(DAY_BUILDS_FIELD.encode(), None)
            if recorded is None or text(recorded) != expected:
                return {}
            for slice_text, blob in fields.items():
                blobs.setdefault(slice_text, []).append(blob)
        merged = {
            name.decode(): merges.image(metric, merges.merge_blobs(metric, parts, spec.sketch_lg_k))
            for name, parts in blobs.items()
        }
        hashes[layout.week_sketches(day_fields[0], metric.name)] = {**merged, **days_field}
    return hashes


def week_keys(layout: KeyLayout, spec: MetricSpec, monday: date) -> list[str]:
    """Every week key a spec's metrics could have (a metric that lost its weeks leaves a stale one)."""
    return [layout.week_sketches(day_field(monday), metric.name) for metric in spec.stored if metric.has_sketch]


def _stage(client: redis.Redis, layout: KeyLayout, hashes: dict[str, dict[str, str | bytes]]) -> dict[str, str]:
    """Write each hash under a temporary key that expires; return temporary key -> day key."""
    token = secrets.token_hex(8)
    staged = {layout.temporary(key, token): key for key in hashes}
    with client.pipeline(transaction=False) as pipe:
        for temporary, key in staged.items():
            pipe.hset(temporary, mapping=hash_fields(hashes[key]))
            pipe.expire(temporary, STAGED_DAY_TTL_SECONDS)
        pipe.execute()
    return staged


def day_keys(layout: KeyLayout, spec: MetricSpec, day: date) -> list[str]:
    """Every day key a spec's metrics could have (a kind change leaves the other one stale)."""
    day_text = day_field(day)
    keys = []
    for metric in spec.stored:
        keys += [layout.day_values(day_text, metric.name), layout.day_sketches(day_text, metric.name)]
    return keys
