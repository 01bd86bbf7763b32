"""The Redis key layout: every key Tally reads or writes is built here.

All keys start with the configured prefix (``TALLY_REDIS_PREFIX``, default
``tally``). One published state of one hour is a *build*; its keys are written
first and become visible only when the pointer hash switches to it.

==========================================  ========  ===============================================
key                                         type      content
==========================================  ========  ===============================================
``{p}:pointer``                             hash      hour -> JSON ``{"build", "published_at"}``,
                                                      plus ``"revised": true`` once the hour's data
                                                      has replaced earlier published data: the live
                                                      build of every published hour.
``{p}:days``                                hash      day -> ``{builds text}|{newest published_at}|``
                                                      ``{revised flags}``: the same pointers, a day
                                                      per field, switched in the same MULTI/EXEC as
                                                      ``{p}:pointer``, so a long range resolves in
                                                      one field per day.
``{p}:pending``                             hash      hour -> JSON ``{"reason", "detected_at"}``: a
                                                      published hour known to be out of date (its
                                                      input changed, or a newer rollup is not yet
                                                      published); its publish removes the field.
``{p}:rollups``                             hash      hour -> input fingerprint of the durable
                                                      rollup last published for it (changed or
                                                      not), so a rollup that was never published
                                                      is found.
``{p}:history:{hour}``                      list      the hour's kept builds, live first; builds that
                                                      fall off its end expire (``tally rollback``
                                                      switches back to the second).
``{p}:meta``                                hash      ``newest_hour``, ``published_at`` of the
                                                      newest publish; ``hours_from``: the first UTC
                                                      day whose hours are kept (older ones live on
                                                      only in their day aggregate, cache.tiers);
                                                      ``days_from``: the first day kept at all.
``{p}:generation``                          string    a random token, replaced with every write a
                                                      reader can see (in a switch's or rollback's
                                                      MULTI/EXEC, or right after pending marks
                                                      change; :func:`mark_changed`), so the API can
                                                      tell a response it kept is still current.
``{p}:definitions``                         hash      day -> JSON ``{metric: fingerprints}``: the
                                                      definition each live build of the day's hours
                                                      00..23 computed each metric under (see
                                                      :func:`definitions_value`), switched with the
                                                      pointers, so a reader knows which hours hold a
                                                      metric under another definition than its spec
                                                      gives now, or not at all.
``{p}:b:{build}:{hour}:manifest``           string    JSON: metrics, their slices, run statistics.
``{p}:b:{build}:{hour}:{metric}:values``    hash      slice -> number (counts, sums, extremes,
                                                      distinct estimates, a quantile sketch's n).
``{p}:b:{build}:{hour}:{metric}:sketches``  hash      slice -> serialized sketch (DataSketches
                                                      formats): HLL or theta (distinct counts), KLL
                                                      doubles (quantiles).
``{p}:day:{day}:{metric}:values``           hash      slice -> the day's number: the sum of its
                                                      hours (counts, sums), their extreme (min,
                                                      max), the estimate of the union of their
                                                      sketches (distinct counts) or the values a
                                                      quantile's day holds; plus ``@builds``.
``{p}:day:{day}:{metric}:sketches``         hash      slice -> the day's hourly sketches merged
                                                      (cache.merges): an HLL_8 union (HLL_4, the
                                                      same registers, once the day is in the day
                                                      tier), a theta union, or a quantile's pooled
                                                      items resampled (``TQD1`` image); plus
                                                      ``@builds``.
``{p}:week:{monday}:{metric}:sketches``     hash      a theta metric's 7 day sketches from that
                                                      Monday merged (cache.weeks); plus ``@days``,
                                                      a digest of the days' builds texts.
``{day key}:tmp:{token}``                   hash      a day (or week) hash being written; renamed
                                                      over its key, expires if the writer dies first.
``{p}:events``                              stream    one entry per write a reader can see (publish
                                                      switch, rollback, pending marks), appended in
                                                      the write's own MULTI/EXEC, capped at about
                                                      ``TALLY_EVENTS_KEEP`` (:mod:`cache.events`).
``{p}:webhooks:cursor``                     string    the id of the last event POSTed to the webhooks;
                                                      ``{p}:webhooks:lock`` (with a TTL) is held
                                                      while a publisher relays (cache.webhooks).
``{p}:storage``                              string    JSON: the storage report the publisher wrote
                                                      after its last publish (bytes per tier and
                                                      metric, growth per day, days until the
                                                      budget; :mod:`cache.storage`), so ``/health``
                                                      and ``/metrics`` never scan Redis.
==========================================  ========  ===============================================

``hour`` is the UTC hour as ``YYYY-MM-DDTHHZ`` (:func:`tally.core.layout.hour_field`); ``build`` is a
content hash of the hour's rollup, so publishing the same data twice yields the
same keys. ``day`` is the UTC day as ``YYYY-MM-DD`` (:func:`tally.core.layout.day_field`). A slice
is ``_`` (all events) or ``dim=value`` pairs sorted by dimension and joined by
``,``, each value percent-encoded (see :func:`slice_id`), so no value can reach
another key or slice.

A day hash is a cache of its hours, never the source of truth. Its ``@builds``
field (:data:`DAY_BUILDS_FIELD`, never a slice id) lists the builds of hours
00..23 it was made from (:func:`day_builds_text`); a reader uses the day hash
only if that text equals what the pointer hash holds for those hours now, and
reads the hours otherwise. Day hashes are replaced whole by RENAME, never
edited in place, and never expire. ``{p}:days`` holds that same builds text per
day (:func:`day_index_value`), so a reader can check a whole day without reading
its 24 pointers.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from tally.core.layout import INSTANT_FORMAT

TOTAL_SLICE = "_"
# The field of a day hash naming the hourly builds it aggregates (not a slice:
# slice ids never start with "@").
DAY_BUILDS_FIELD = "@builds"
# Fields of {p}:meta moved only forward by cache.tiers: the first UTC day (YYYY-MM-DD) whose
# hours Redis keeps, and the first day it keeps at all.
META_HOURS_FROM = "hours_from"
META_DAYS_FROM = "days_from"
HOURS_PER_DAY = 24


def published_at_text(moment: datetime) -> str:
    """How a publish time is written in pointers, the day index and manifests."""
    return moment.astimezone(UTC).strftime(INSTANT_FORMAT)


def parse_published_at(text: str) -> datetime:
    """Inverse of :func:`published_at_text`."""
    return datetime.strptime(text, INSTANT_FORMAT).replace(tzinfo=UTC)


def pointer_value(build: str, published_at: str, *, revised: bool) -> str:
    """A ``{p}:pointer`` field value (JSON); ``revised`` is written only when true."""
    document: dict[str, str | bool] = {"build": build, "published_at": published_at}
    if revised:
        document["revised"] = True
    return json.dumps(document)


def pointer_build(value: str | bytes | None) -> str | None:
    """The build a ``{p}:pointer`` field value names (None for an hour never published)."""
    return json.loads(value)["build"] if value else None


def day_index_value(builds_text: str, published_at: str, revised: Sequence[bool]) -> str:
    """A ``{p}:days`` field value: the day's builds text, newest publish time and revised hours.

    ``revised`` has one flag per hour 00..23, written as 24 ``0``/``1`` characters.
    """
    if len(revised) != HOURS_PER_DAY:
        raise ValueError(f"a day has {HOURS_PER_DAY} hours, got {len(revised)} revised flags")
    return f"{builds_text}|{published_at}|{''.join('1' if flag else '0' for flag in revised)}"


def parse_day_index_value(value: str) -> tuple[str, str, tuple[bool, ...]]:
    """Inverse of :func:`day_index_value`: (builds text, newest published_at, revised flags).

    A value written before revised flags existed (two parts) has none revised.
    """
    builds_text, published_at, *rest = value.split("|")
    flags = rest[0] if rest else "0" * HOURS_PER_DAY
    return builds_text, published_at, tuple(flag == "1" for flag in flags)


def day_hours(day: date) -> list[datetime]:
    """The day's UTC hours 00..23, in the order :func:`day_builds_text` lists them."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [midnight + timedelta(hours=h) for h in range(HOURS_PER_DAY)]


def day_builds_text(builds: Sequence[str | None]) -> str:
    """The ``@builds`` text of a day: its 24 hours' live builds, ``-`` for an hour not computed."""
    if len(builds) != HOURS_PER_DAY:
        raise ValueError(f"a day has {HOURS_PER_DAY} hours, got {len(builds)} builds")
    return ",".join("-" if build is None else build for build in builds)


# A metric's entry for an hour in ``{p}:definitions``: no live build holds it there.
NOT_COMPUTED = "-"
# An hour built before definitions were recorded: taken as the current definition.
UNRECORDED = "?"
# The entry of every metric a day's field does not name (builds that recorded no definitions).
ANY_METRIC = "*"


def definitions_value(per_metric: Mapping[str, Sequence[str]]) -> str:
    """A ``{p}:definitions`` field: for each metric, its definition fingerprint in hours 00..23.

    A metric's 24 entries are a fingerprint, ``-`` (:data:`NOT_COMPUTED`) or ``?``
    (:data:`UNRECORDED`); a day whose hours all agree is written as that one entry,
    so the usual day is a few bytes per metric. Metrics no hour holds are left out.
    """
    document: dict[str, str] = {}
    for metric in sorted(per_metric):
        entries = list(per_metric[metric])
        if len(entries) != HOURS_PER_DAY:
            raise ValueError(f"a day has {HOURS_PER_DAY} hours, got {len(entries)} definitions of {metric!r}")
        if all(entry == NOT_COMPUTED for entry in entries):
            continue
        document[metric] = entries[0] if len(set(entries)) == 1 else ",".join(entries)
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def parse_definitions_value(value: str | bytes | None) -> dict[str, tuple[str, ...]]:
    """Inverse of :func:`definitions_value`: metric -> its 24 hours' entries."""
    if not value:
        return {}
    parsed: dict[str, tuple[str, ...]] = {}
    for metric, text in json.loads(value).items():
        entries = tuple(text.split(","))
        parsed[metric] = entries if len(entries) == HOURS_PER_DAY else (text,) * HOURS_PER_DAY
    return parsed


def slice_id(labels: Mapping[str, str]) -> str:
    """The canonical slice field for a set of dimension values."""
    if not labels:
        return TOTAL_SLICE
    return ",".join(f"{dim}={quote(labels[dim], safe='')}" for dim in sorted(labels))


def slice_labels(slice_text: str) -> dict[str, str]:
    """Inverse of :func:`slice_id`."""
    if slice_text == TOTAL_SLICE:
        return {}
    labels = {}
    for pair in slice_text.split(","):
        dim, _, value = pair.partition("=")
        labels[dim] = unquote(value)
    return labels


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "tally"

    def pointer(self) -> str:
        return f"{self.prefix}:pointer"

    def meta(self) -> str:
        return f"{self.prefix}:meta"

    def history(self, hour: str) -> str:
        return f"{self.prefix}:history:{hour}"

    def day_index(self) -> str:
        return f"{self.prefix}:days"

    def pending(self) -> str:
        return f"{self.prefix}:pending"

    def definitions(self) -> str:
        return f"{self.prefix}:definitions"

    def generation(self) -> str:
        """A token replaced by every write a reader can see (see :func:`mark_changed`)."""
        return f"{self.prefix}:generation"

    def published_rollups(self) -> str:
        return f"{self.prefix}:rollups"

    def storage(self) -> str:
        """The last storage report (:mod:`cache.storage`)."""
        return f"{self.prefix}:storage"

    def events(self) -> str:
        """The capped stream of publish events (:mod:`cache.events`)."""
        return f"{self.prefix}:events"

    def webhook_cursor(self) -> str:
        """The id of the last event relayed to the webhooks (:mod:`cache.webhooks`)."""
        return f"{self.prefix}:webhooks:cursor"

    def webhook_lock(self) -> str:
        return f"{self.prefix}:webhooks:lock"

    def manifest(self, build: str, hour: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:manifest"

    def values(self, build: str, hour: str, metric: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:{metric}:values"

    def sketches(self, build: str, hour: str, metric: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:{metric}:sketches"

    def day_values(self, day: str, metric: str) -> str:
        return f"{self.prefix}:day:{day}:{metric}:values"

    def day_sketches(self, day: str, metric: str) -> str:
        return f"{self.prefix}:day:{day}:{metric}:sketches"

    def week_sketches(self, monday: str, metric: str) -> str:
        """The union of a theta metric's 7 day sketches from ``monday`` (cache.weeks)."""
        return f"{self.prefix}:week:{monday}:{metric}:sketches"

    @staticmethod
    def temporary(key: str, token: str) -> str:
        """Where ``key``'s next content is written before a RENAME makes it live."""
        return f"{key}:tmp:{token}"

    def all_keys_pattern(self) -> str:
        """SCAN pattern matching every key under this prefix (tests and cleanup)."""
        return f"{self.prefix}:*"

    def _index_keys(self) -> frozenset[str]:
        return frozenset(
            {
                self.pointer(),
                self.meta(),
                self.day_index(),
                self.pending(),
                self.definitions(),
                self.generation(),
                self.published_rollups(),
                self.storage(),
                self.events(),
                self.webhook_cursor(),
                self.webhook_lock(),
            }
        )

    def classify(self, key: str) -> KeyInfo | None:
        """Which tier (and metric, hour or day) a key under this prefix belongs to: the inverse of the methods above.

        None for a key outside the prefix. A key under the prefix this layout does
        not name is :data:`TIER_OTHER`, so a measurement never drops bytes silently.
        """
        head = f"{self.prefix}:"
        if not key.startswith(head):
            return None
        parts = key[len(head) :].split(":")
        if parts[0] == "b" and len(parts) == 4 and parts[3] == "manifest":
            return KeyInfo(TIER_HOUR, "manifest", build=parts[1], hour=parts[2])
        if parts[0] == "b" and len(parts) == 5 and parts[4] in _METRIC_PARTS:
            return KeyInfo(TIER_HOUR, parts[4], metric=parts[3], build=parts[1], hour=parts[2])
        # A day hash, or a day hash being written (``...:tmp:{token}``, see :meth:`temporary`).
        is_day = parts[0] == "day" and (len(parts) == 4 or (len(parts) == 6 and parts[4] == "tmp"))
        if is_day and parts[3] in _METRIC_PARTS:
            return KeyInfo(TIER_DAY, parts[3], metric=parts[2], day=parts[1])
        # A week hash (or one being written) belongs to the day tier, counted on its Monday.
        is_week = parts[0] == "week" and (len(parts) == 4 or (len(parts) == 6 and parts[4] == "tmp"))
        if is_week and parts[3] == "sketches":
            return KeyInfo(TIER_DAY, "sketches", metric=parts[2], day=parts[1])
        if key in self._index_keys():
            return KeyInfo(TIER_INDEX, parts[0])
        if len(parts) == 2 and parts[0] == "history":
            return KeyInfo(TIER_INDEX, "history", hour=parts[1])
        return KeyInfo(TIER_OTHER, "other")


# Storage tiers (:meth:`KeyLayout.classify`): hour builds, day aggregates, and the
# pointer/index hashes every reader starts from.
TIER_HOUR = "hour"
TIER_DAY = "day"
TIER_INDEX = "index"
TIER_OTHER = "other"
_METRIC_PARTS = frozenset({"values", "sketches"})


@dataclass(frozen=True)
class KeyInfo:
    """What :meth:`KeyLayout.classify` learns from a key: its tier, what it holds, and whose it is.

    ``part`` is ``values``, ``sketches`` or ``manifest`` for builds and days, the
    index key's own name (``pointer``, ``history``, ...) otherwise.
    """

    tier: str
    part: str
    metric: str | None = None
    build: str | None = None
    hour: str | None = None
    day: str | None = None


def mark_changed(client: Any, layout: KeyLayout) -> str:
    """Give ``{p}:generation`` a new random token: what readers see has changed.

    Every pointer switch and pending-mark change calls this with its writes, so
    the API may serve a response it built earlier for as long as the token it read
    then is still there (dashboard_api.response_cache). A random token, not a
    counter: after Redis loses its data a counter would start again and could
    repeat a value an API process has cached responses under. Returns the token
    (the publish events of :mod:`cache.events` carry it).
    """
    token = secrets.token_hex(8)
    client.set(layout.generation(), token)
    return token
