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
    hll4 = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_4)
    for i in range(5000):
        hll4.update(i)
    assert hll.dense_registers(hll4.serialize_compact(), LG_K) is None


def test_rolling_maxima_give_every_window():
    rng = np.random.default_rng(3)
    units = rng.integers(0, 20, size=(23, 16), dtype=np.uint8)
    length = 5
    prefix, suffix = hll.rolling_maxima(units, length)
    for i in range(len(units) - length + 1):
        j = i + length - 1
        window = prefix[j] if i % length == 0 else np.maximum(suffix[i], prefix[j])
        assert (window == units[i : j + 1].max(axis=0)).all()
