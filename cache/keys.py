"""The Redis key layout: every key Tally reads or writes is built here.

All keys start with the configured prefix (``TALLY_REDIS_PREFIX``, default
``tally``). One published state of one hour is a *build*; its keys are written
first and become visible only when the pointer hash switches to it.

==========================================  ========  ===============================================
key                                         type      content
==========================================  ========  ===============================================
``{p}:pointer``                             hash      hour -> JSON ``{"build", "published_at"}``:
                                                      the live build of every published hour. The
                                                      only key a publish switches; readers resolve
                                                      every hour through it in one HMGET.
``{p}:meta``                                hash      ``newest_hour``, ``published_at`` of the
                                                      newest publish.
``{p}:b:{build}:{hour}:manifest``           string    JSON: metrics, their slices, run statistics.
``{p}:b:{build}:{hour}:{metric}:values``    hash      slice -> number (counts, sums, and distinct
                                                      estimates).
``{p}:b:{build}:{hour}:{metric}:sketches``  hash      slice -> serialized HLL sketch (DataSketches
                                                      format), distinct-count metrics only.
==========================================  ========  ===============================================

``hour`` is the UTC hour as ``YYYY-MM-DDTHHZ`` (:func:`hour_field`); ``build`` is a
content hash of the hour's rollup, so publishing the same data twice yields the
same keys. A slice is ``_`` (all events) or ``dim=value`` pairs sorted by
dimension and joined by ``,``, each value percent-encoded (see
:func:`slice_id`), so no value can reach another key or slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

TOTAL_SLICE = "_"


def hour_field(hour: datetime) -> str:
    """How an hour is written in keys and pointer fields: ``2026-11-27T10Z``."""
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%HZ")


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

    def manifest(self, build: str, hour: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:manifest"

    def values(self, build: str, hour: str, metric: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:{metric}:values"

    def sketches(self, build: str, hour: str, metric: str) -> str:
        return f"{self.prefix}:b:{build}:{hour}:{metric}:sketches"

    def all_keys_pattern(self) -> str:
        """SCAN pattern matching every key under this prefix (tests and cleanup)."""
        return f"{self.prefix}:*"
