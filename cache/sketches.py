"""HLL sketches, the one home for them: unions, images and estimates, for the publisher and the API.

Spark's ``hll_sketch_agg`` writes HLL_8 sketches; every union Tally stores (day
sketches) keeps that type, so stored unions merge with hourly sketches again.

Fast path: unions of dense HLL_8 sketches as NumPy register arrays.
An HLL union is the element-wise maximum of register arrays, so rolling windows
can be computed with cumulative maxima instead of thousands of sketch unions.
Estimates still come from DataSketches: the registers are written back into a
serialized HLL_8 image (the layout of a union result: compact, out-of-order,
HIP accumulator 0, kxq sums and zero count from the registers) and estimated by
the library, so they equal what ``hll_union.get_estimate()`` returns for the
same inputs (pinned in tests/test_hll.py). Only dense (HLL-mode) HLL_8 and HLL_4
sketches take this path; callers fall back to ``datasketches`` for anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import datasketches
import numpy as np

_PREAMBLE_INTS_HLL = 10
_HEADER_BYTES = 40
_SER_VER, _FAMILY_HLL = 1, 7
_MODE_HLL_8 = 2 | (2 << 2)  # current mode HLL, target type HLL_8
_FLAGS_COMPACT_OUT_OF_ORDER = 8 | 16
_INVERSE_POWERS = np.ldexp(1.0, -np.arange(256))

# Spark's hll_sketch_agg writes HLL_8; stored unions keep it so they union with hourly ones again.
STORED_TYPE = datasketches.tgt_hll_type.HLL_8
# Day aggregates of days in the day tier (cache.tiers) are kept as HLL_4: the same registers
# (values past curMin + 14 go to an exception list), so the same unions and estimates, in
# about half the bytes of a dense HLL_8 image. Coupon (list/set mode) images are the same size.
COMPACT_TYPE = datasketches.tgt_hll_type.HLL_4
_MODE_HLL_4 = 2  # current mode HLL, target type HLL_4
_AUX_TOKEN = 15  # an HLL_4 nibble that says "see the exception list"
_AUX_SLOT_BITS = 26  # an exception is slot | value << 26


def union_of(blobs: Iterable[bytes], lg_k: int) -> datasketches.hll_union:
    """The union of serialized sketches (any HLL type, any lg_k up to ``lg_k``)."""
    union = datasketches.hll_union(lg_k)
    for blob in blobs:
        union.update(datasketches.hll_sketch.deserialize(blob))
    return union


def union_image(union: datasketches.hll_union) -> bytes:
    """A union's result as the compact image Tally stores."""
    return union.get_result(STORED_TYPE).serialize_compact()


def decode(blob: bytes) -> datasketches.hll_sketch:
    """One serialized sketch, ready to update a union (callers may cache it per blob)."""
    return datasketches.hll_sketch.deserialize(blob)


def estimate_of(blob: bytes) -> float:
    """The distinct-count estimate of one serialized sketch."""
    return datasketches.hll_sketch.deserialize(blob).get_estimate()


def is_dense_hll8(blob: bytes, lg_k: int) -> bool:
    """Whether ``blob`` is a dense HLL_8 image of ``lg_k`` (what :func:`compact_union_image` shrinks)."""
    return len(blob) == _HEADER_BYTES + (1 << lg_k) and blob[7] == _MODE_HLL_8 and blob[3] == lg_k


def compact_union_image(blob: bytes, lg_k: int) -> bytes:
    """A stored union re-encoded as HLL_4 (:data:`COMPACT_TYPE`): same registers, same estimate.

    Only for images that are union results already (day aggregates): a union keeps
    their registers and out-of-order estimator exactly.
    """
    return union_of([blob], lg_k).get_result(COMPACT_TYPE).serialize_compact()


def dense_registers(blob: bytes, lg_k: int) -> np.ndarray | None:
    """The register array of a dense HLL_8 or HLL_4 sketch of ``lg_k``; None for any other image."""
    if len(blob) < _HEADER_BYTES or blob[0] != _PREAMBLE_INTS_HLL or blob[2] != _FAMILY_HLL or blob[3] != lg_k:
        return None
    if blob[7] == _MODE_HLL_8:
        if len(blob) != _HEADER_BYTES + (1 << lg_k):
            return None
        return np.frombuffer(blob, dtype=np.uint8, offset=_HEADER_BYTES)
    if blob[7] == _MODE_HLL_4:
        return _hll4_registers(blob, lg_k)
    return None


def _hll4_registers(blob: bytes, lg_k: int) -> np.ndarray | None:
    """Registers of a compact dense HLL_4 image: curMin + nibble (low nibble = even slot), exceptions patched."""
    packed_bytes = 1 << (lg_k - 1)
    (exceptions,) = struct.unpack_from("<i", blob, 36)
    if len(blob) != _HEADER_BYTES + packed_bytes + 4 * exceptions:
        return None
    packed = np.frombuffer(blob, dtype=np.uint8, offset=_HEADER_BYTES, count=packed_bytes)
    nibbles = np.empty(1 << lg_k, dtype=np.uint8)
    nibbles[0::2] = packed & 0x0F
    nibbles[1::2] = packed >> 4
    if np.count_nonzero(nibbles == _AUX_TOKEN) != exceptions:
        return None  # every token has its exception, or this is not an image this reader knows
    registers = nibbles + np.uint8(blob[6])  # curMin
    if exceptions:
        pairs = np.frombuffer(blob, dtype="<u4", offset=_HEADER_BYTES + packed_bytes, count=exceptions)
        registers[pairs & ((1 << _AUX_SLOT_BITS) - 1)] = (pairs >> _AUX_SLOT_BITS).astype(np.uint8)
    return registers


def image(registers: np.ndarray, lg_k: int) -> bytes:
    """A serialized HLL_8 sketch holding ``registers``, as a union result would be."""
    high = registers >= 32
    kxq1 = float(_INVERSE_POWERS[registers[high]].sum()) if high.any() else 0.0
    kxq0 = float(_INVERSE_POWERS[registers].sum()) - kxq1
    zeros = int(np.count_nonzero(registers == 0))
    header = struct.pack(
        "<BBBBBBBBdddii",
        _PREAMBLE_INTS_HLL,
        _SER_VER,
        _FAMILY_HLL,
        lg_k,
        0,
        _FLAGS_COMPACT_OUT_OF_ORDER,
        0,
        _MODE_HLL_8,
        0.0,
        kxq0,
        kxq1,
        zeros,
        0,
    )
    return header + registers.astype(np.uint8, copy=False).tobytes()


def estimate(registers: np.ndarray, lg_k: int) -> float:
    return datasketches.hll_sketch.deserialize(image(registers, lg_k)).get_estimate()


def rolling_maxima(units: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block cumulative maxima (van Herk/Gil-Werman): prefix from each block's start,
    suffix to each block's end. ``units`` is (days, registers)."""
    prefix = units.copy()
    suffix = units.copy()
    # Row by row: np.maximum.accumulate along axis 0 is far slower on uint8 rows.
    for start in range(0, len(units), length):
        stop = min(start + length, len(units))
        for k in range(start + 1, stop):
            np.maximum(prefix[k - 1], prefix[k], out=prefix[k])
        for k in range(stop - 2, start - 1, -1):
            np.maximum(suffix[k + 1], suffix[k], out=suffix[k])
    return prefix, suffix
