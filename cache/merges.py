"""How a stored metric's figures combine, for the publisher's day aggregates and the API's reads.

A metric's :attr:`~tally.core.spec.Metric.merge` names its arithmetic; this module
is the one place it is carried out on published data:

- ``sum``: counts and sums add (``math.fsum``); ``min`` / ``max``: the extreme;
- ``hll``: HyperLogLog unions (:mod:`cache.sketches`, which also owns the register fast path);
- ``theta``: theta sketch unions, and intersections for retention and funnels;
- ``kll``: KLL doubles sketches pooled as their weighted items (:class:`Distribution`), asked for any quantile.

Spark writes the sketches (``hll_sketch_agg``, ``theta_sketch_agg``,
``kll_sketch_agg_double``) in the DataSketches formats the ``datasketches``
library reads, so what the job stores merges here without conversion.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import datasketches
import numpy as np

from cache import sketches as hll
from tally.core.spec import Merge, Metric

# Error bounds are about 95%: two standard deviations (the contract).
BOUND_STD_DEVS = 2


def combine_numbers(merge: Merge, numbers: Iterable[float]) -> float | None:
    """Numbers of a sum, min or max metric combined; None for a min or max of nothing."""
    if merge is Merge.SUM:
        return math.fsum(numbers)
    found = list(numbers)
    if not found:
        return None
    return min(found) if merge is Merge.MIN else max(found)


# A day aggregate of a quantile metric: not a KLL merge (its compaction flips coins, so the
# same hours would give other bytes and other answers each rebuild) but the hours' pooled
# items, resampled to this many equally weighted points per KLL k: deterministic, adding at
# most 1 / (2 * 2k) rank error (0.125% at k 200) to the sketches' own, in 8 bytes a point.
DISTRIBUTION_MAGIC = b"TQD1"
POINTS_PER_K = 2


@dataclass(frozen=True)
class Distribution:
    """What KLL sketches say about their values: retained items, sorted, and their cumulative weights.

    Readers pool the sketches' weighted items (the sorted view a merge without
    compaction would have) instead of merging KLL sketches, whose compaction is
    random: the same answer every time, and no error beyond the sketches' own.
    """

    items: np.ndarray
    cumulative: np.ndarray  # running total of the weights, in item order

    @property
    def total(self) -> float:
        """How many values the distribution stands for (a KLL sketch's n)."""
        return float(self.cumulative[-1]) if len(self.cumulative) else 0.0

    @classmethod
    def of(cls, parts: Iterable[Distribution]) -> Distribution:
        found = [p for p in parts if len(p.items)]
        if len(found) == 1:
            return found[0]
        if not found:
            return cls(np.empty(0), np.empty(0))
        items = np.concatenate([p.items for p in found])
        weights = np.concatenate([np.diff(p.cumulative, prepend=0.0) for p in found])
        order = np.argsort(items, kind="stable")
        return cls(items[order], np.cumsum(weights[order]))

    @classmethod
    def of_sketch(cls, sketch: datasketches.kll_doubles_sketch) -> Distribution:
        pairs = np.array(list(sketch), dtype=np.float64).reshape(-1, 2)
        order = np.argsort(pairs[:, 0], kind="stable")
        return cls(pairs[order, 0], np.cumsum(pairs[order, 1]))

    def quantile(self, q: float) -> float | None:
        """The smallest item whose cumulative weight exceeds ``q`` of the total (KLL's exclusive quantile)."""
        if not len(self.items):
            return None
        index = int(np.searchsorted(self.cumulative, q * self.cumulative[-1], side="right"))
        return float(self.items[min(index, len(self.items) - 1)])

    def resampled(self, points: int) -> Distribution:
        """At most ``points`` equally weighted items: the quantiles at the midpoints of ``points`` equal ranks."""
        if len(self.items) <= points:
            return self
        ranks = (np.arange(points) + 0.5) / points * self.total
        chosen = self.items[np.minimum(np.searchsorted(self.cumulative, ranks, side="left"), len(self.items) - 1)]
        return Distribution(chosen, np.arange(1, points + 1) * (self.total / points))

    def image(self) -> bytes:
        """``TQD1``, the item count, the total weight, whether the weights are equal, the items, the weights.

        Little-endian; the weights are left out when equal (a resampled day): 8 bytes a point.
        """
        weights = np.diff(self.cumulative, prepend=0.0)
        equal = bool(len(weights)) and bool(np.allclose(weights, weights[0], rtol=1e-12, atol=0.0))
        head = DISTRIBUTION_MAGIC + struct.pack("<Id?", len(self.items), self.total, equal)
        return head + self.items.astype("<f8").tobytes() + (b"" if equal else weights.astype("<f8").tobytes())

    @classmethod
    def from_image(cls, blob: bytes) -> Distribution:
        count, total, equal = struct.unpack_from("<Id?", blob, len(DISTRIBUTION_MAGIC))
        start = len(DISTRIBUTION_MAGIC) + struct.calcsize("<Id?")
        items = np.frombuffer(blob, dtype="<f8", count=count, offset=start)
        if equal:
            return cls(items, np.arange(1, count + 1) * (total / count))
        weights = np.frombuffer(blob, dtype="<f8", count=count, offset=start + 8 * count)
        return cls(items, np.cumsum(weights))


def decode(merge: Merge, blob: bytes) -> Any:
    """One serialized sketch of the merge's family, ready to combine (callers may cache it).

    A KLL sketch (an hour, from Spark) or a day aggregate's image is read as its :class:`Distribution`.
    """
    if merge is Merge.HLL:
        return hll.decode(blob)
    if merge is Merge.THETA:
        return datasketches.compact_theta_sketch.deserialize(blob)
    if merge is Merge.KLL:
        if blob.startswith(DISTRIBUTION_MAGIC):
            return Distribution.from_image(blob)
        return Distribution.of_sketch(datasketches.kll_doubles_sketch.deserialize(blob))
    raise ValueError(f"a {merge.value} metric has no sketches")


def combine(metric: Metric, sketches: Iterable[Any], hll_lg_k: int) -> Any:
    """Decoded sketches of ``metric`` combined: an ``hll_union``, a compact theta sketch or a :class:`Distribution`."""
    merge = metric.merge
    if merge is Merge.HLL:
        union = hll.union_of((), hll_lg_k)
        for sketch in sketches:
            union.update(sketch)
        return union
    if merge is Merge.THETA:
        found = list(sketches)
        if len(found) == 1:  # one stored sketch needs no union (which would only trim it to k entries)
            return found[0]
        theta = datasketches.theta_union(metric.lg_nom_entries)
        for sketch in found:
            theta.update(sketch)
        return theta.get_result(False)  # unordered: intersections and estimates need no order
    if merge is Merge.KLL:
        return Distribution.of(sketches)
    raise ValueError(f"{metric.name}: a {merge.value} metric has no sketches")


def merge_blobs(metric: Metric, blobs: Iterable[bytes], hll_lg_k: int) -> Any:
    """Serialized sketches merged into what the publisher stores as a day aggregate (see :func:`image`).

    The same blobs always give the same bytes: unions are deterministic, and a
    quantile's day is its hours' pooled items resampled (:data:`POINTS_PER_K`).
    """
    decoded = [decode(metric.merge, blob) for blob in blobs]
    if metric.merge is Merge.KLL:
        return Distribution.of(decoded).resampled(POINTS_PER_K * metric.kll_k)
    if metric.merge is Merge.THETA:  # ordered, whatever the readers' unions do: the same bytes every rebuild
        theta = datasketches.theta_union(metric.lg_nom_entries)
        for sketch in decoded:
            theta.update(sketch)
        return theta.get_result(True)
    return combine(metric, decoded, hll_lg_k)


def image(metric: Metric, merged: Any) -> bytes:
    """What :func:`merge_blobs` returned, serialized as Tally stores it."""
    if metric.merge is Merge.HLL:
        return hll.union_image(merged)
    if metric.merge is Merge.KLL:
        return merged.image()
    return bytes(merged.serialize())


def summary_value(metric: Metric, combined: Any) -> float:
    """The number a day aggregate's values hash keeps for a merged sketch.

    A distinct count's estimate; a quantile's number of values (as the job
    stores it), so a quantile slice with nothing in it is 0, absent like a count's.
    """
    if metric.merge is Merge.KLL:
        return combined.total
    return float(combined.get_estimate())


def distinct_estimate(combined: Any) -> float:
    return float(combined.get_estimate())


def distinct_bounds(combined: Any) -> tuple[float, float]:
    """About 95% bounds of a merged distinct count (an ``hll_union`` or a theta sketch), from the sketch."""
    return float(combined.get_lower_bound(BOUND_STD_DEVS)), float(combined.get_upper_bound(BOUND_STD_DEVS))


def quantile(combined: Distribution, q: float) -> float | None:
    """The ``q`` quantile of combined KLL sketches; None when they hold no value."""
    return combined.quantile(q)


def intersection(sketches: Iterable[Any]) -> Any:
    """The theta intersection of compact theta sketches (a compact theta sketch; estimate and bounds)."""
    found = datasketches.theta_intersection()
    for sketch in sketches:
        found.update(sketch)
    return found.get_result()


def nominal_error(metric: Metric, hll_lg_k: int) -> float | None:
    """A sketch metric's nominal error (one standard deviation, relative), or None for exact kinds.

    Distinct counts: the relative standard error of the estimate (HLL unions;
    theta 1/sqrt(k - 1)). Quantiles: KLL's normalized rank error (the rank of the
    value returned for q is within it of q, at 99% confidence).
    """
    merge = metric.merge if not metric.is_ratio else None
    if merge is Merge.HLL:
        return abs(float(datasketches.hll_sketch.get_rel_err(True, True, hll_lg_k, 1)))  # signed: the upper side
    if merge is Merge.THETA:
        return 1.0 / math.sqrt((1 << metric.lg_nom_entries) - 1)
    if merge is Merge.KLL:
        return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(metric.kll_k, False))
    return None
