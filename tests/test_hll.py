"""Register-array HLL unions give exactly DataSketches' union estimates."""

from __future__ import annotations

import random

import datasketches
import numpy as np
import pytest

from cache import sketches as hll

LG_K = 14


def sketch(users, lg_k: int = LG_K) -> datasketches.hll_sketch:
    s = datasketches.hll_sketch(lg_k, datasketches.tgt_hll_type.HLL_8)
    for user in users:
        s.update(f"u{user}")
    return s


# A union of two or more sketches is "out of order" and estimated from its registers; a
# single sketch keeps its HIP estimate, which is why callers never use this for one sketch.
@pytest.mark.parametrize("sizes", [(3000, 5000), (20000, 20000, 20000), (4000, 90000), (2500, 2500)])
def test_register_union_estimate_equals_datasketches(sizes):
    rng = random.Random(sum(sizes))
    sketches = [sketch(rng.sample(range(200_000), n)) for n in sizes]
    union = datasketches.hll_union(LG_K)
    registers = []
    for s in sketches:
        union.update(s)
        dense = hll.dense_registers(s.serialize_compact(), LG_K)
        assert dense is not None
        registers.append(dense)
    merged = np.maximum.reduce(registers)
    assert hll.estimate(merged, LG_K) == pytest.approx(union.get_estimate(), rel=1e-12)
    # The image round-trips: it is a union result's image.
    result = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()
    assert hll.image(merged, LG_K)[40:] == result[40:]


def test_sparse_and_other_images_are_refused():
    assert hll.dense_registers(sketch(range(10)).serialize_compact(), LG_K) is None  # list mode
    assert hll.dense_registers(sketch(range(300)).serialize_compact(), LG_K) is None  # set mode
    assert hll.dense_registers(sketch(range(5000), lg_k=12).serialize_compact(), LG_K) is None
    assert hll.dense_registers(b"\x0a\x01\x07\x0e" + bytes(60), LG_K) is None  # truncated


@pytest.mark.parametrize(("lg_k", "size"), [(14, 30_000), (14, 400_000), (8, 2_000_000), (4, 3_000_000)])
def test_hll4_images_decode_to_the_hll8_registers(lg_k, size):
    """A day aggregate kept as HLL_4 (cache.tiers) is read by the fast path as its HLL_8 registers."""
    union = datasketches.hll_union(lg_k)
    union.update(sketch(range(size), lg_k=lg_k))
    union.update(sketch(range(size // 2, size * 2), lg_k=lg_k))
    hll8 = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()
    hll4 = hll.compact_union_image(hll8, lg_k)
    assert hll4[7] == 2 and len(hll4) < len(hll8)  # dense HLL_4, smaller
    decoded = hll.dense_registers(hll4, lg_k)
    assert decoded is not None
    assert np.array_equal(decoded, hll.dense_registers(hll8, lg_k))
    assert hll.estimate_of(hll4) == hll.estimate_of(hll8)


def test_hll4_exceptions_are_patched():
    # Tiny registers over millions of items spread far beyond curMin + 14: the exception list.
    union = datasketches.hll_union(4)
    union.update(sketch(range(5_000_000), lg_k=4))
    hll8 = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()
    hll4 = hll.compact_union_image(hll8, 4)
    exceptions = int.from_bytes(hll4[36:40], "little")
    registers = hll.dense_registers(hll8, 4)
    assert registers is not None
    if exceptions == 0:  # make one: the same registers with one far above the rest
        patched = registers.copy()
        patched[3] = 40
        hll8 = hll.image(patched, 4)
        hll4 = hll.compact_union_image(hll8, 4)
        exceptions, registers = int.from_bytes(hll4[36:40], "little"), patched
    assert exceptions > 0
    assert np.array_equal(hll.dense_registers(hll4, 4), registers)


@pytest.mark.parametrize("size", [5, 300, 50_000])  # list, set and HLL mode
def test_compact_union_images_keep_every_estimate_and_union(size):
    union = datasketches.hll_union(LG_K)
    union.update(sketch(range(size)))
    union.update(sketch(range(size, size * 2)))
    hll8 = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()
    hll4 = hll.compact_union_image(hll8, LG_K)
    assert hll.estimate_of(hll4) == hll.estimate_of(hll8)
    hour = sketch(range(size * 3, size * 4)).serialize_compact()
    assert hll.union_of([hll4, hour], LG_K).get_estimate() == hll.union_of([hll8, hour], LG_K).get_estimate()


def test_rolling_maxima_give_every_window():
    rng = np.random.default_rng(3)
    units = rng.integers(0, 20, size=(23, 16), dtype=np.uint8)
    length = 5
    prefix, suffix = hll.rolling_maxima(units, length)
    for i in range(len(units) - length + 1):
        j = i + length - 1
        window = prefix[j] if i % length == 0 else np.maximum(suffix[i], prefix[j])
        assert (window == units[i : j + 1].max(axis=0)).all()
