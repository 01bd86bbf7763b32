"""Unit tests of evaluating a snapshot: dashboard_api.evaluate, .present and .series (no Redis, no HTTP)."""

from __future__ import annotations

from datetime import date

import datasketches

from dashboard_api import calendar as cal
from dashboard_api.evaluate import Evaluator
from dashboard_api.plan import HashRead, Snapshot, plan_reads
from dashboard_api.present import divide, present
from dashboard_api.requests import SeriesRequest, Span
from dashboard_api.series import SeriesData, build_series, group_values
from tally.core.spec import Kind
from tests.support.api import LG_K, SPEC, at


def hll(*items: str) -> bytes:
    sketch = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)
    for item in items:
        sketch.update(item)
    return sketch.serialize_compact()


def test_evaluator_sums_hours_and_consistent_days() -> None:
    read = HashRead("revenue", "values")
    snapshot = Snapshot(
        published_at={at(26, 23): "p", at(27, 0): "p", at(27, 5): "p", at(28, 0): "p"},
        hours={read: {at(26, 23): {"_": 1.0}, at(28, 0): {"_": 4.0, "platform=web": 4.0}}},
        days={read: {date(2026, 11, 27): {"_": 10.0}}},
    )
    evaluator = Evaluator(SPEC, snapshot, [read], cal.UTC_ZONE)
    revenue = SPEC.get("revenue")
    assert evaluator.value(revenue, Span(at(26, 23), at(28, 1)), ["_"]) == 15.0
    assert evaluator.value(revenue, Span(at(28, 0), at(28, 1)), ["platform=web"]) == 4.0
    assert evaluator.value(revenue, Span(at(26, 23), at(27, 0)), ["platform=web"]) == 0  # computed, no slice
    assert evaluator.value(revenue, Span(at(26, 0), at(26, 5)), ["_"]) is None  # nothing computed


def test_evaluator_unions_sketches_never_sums() -> None:
    read = HashRead("active_users", "sketches")
    snapshot = Snapshot(
        published_at={at(27, 1): "p", at(27, 2): "p", at(27, 3): "p"},
        hours={
            read: {
                at(27, 1): {"_": hll(*(f"u{i}" for i in range(100)))},
                at(27, 2): {"_": hll(*(f"u{i}" for i in range(50, 150)))},
                at(27, 3): {},
            }
        },
    )
    evaluator = Evaluator(SPEC, snapshot, [read], cal.UTC_ZONE)
    users = SPEC.get("active_users")
    assert evaluator.value(users, Span(at(27, 1), at(27, 4)), ["_"]) == 150
    assert evaluator.value(users, Span(at(27, 3), at(27, 4)), ["_"]) == 0
    assert evaluator.value(users, Span(at(27, 5), at(27, 6)), ["_"]) is None


def test_divide_and_present() -> None:
    assert divide(6, 4) == 1.5
    assert divide(6, 0) is None
    assert divide(None, 4) is None and divide(6, None) is None
    assert present(None, Kind.SUM) is None
    assert type(present(3.0, Kind.COUNT)) is int and present(2.6, Kind.COUNT_DISTINCT) == 3
    assert type(present(3.0, Kind.SUM)) is float


def test_group_values_matches_exact_slice_shape() -> None:
    slices = [
        "_",
        "platform=web",
        "platform=ios",
        "country=US",
        "country=US,platform=ios",
        "country=DE,platform=web",
    ]
    assert group_values(slices, {}, "platform") == ["ios", "web"]
    assert group_values(slices, {"country": "US"}, "platform") == ["ios"]
    assert group_values(slices, {"country": "JP"}, "platform") == []
    assert group_values(["platform=a%2Cb"], {}, "platform") == ["a,b"]
    # A value seen only with an extra dimension is not a series of this shape.
    assert group_values(["platform=web", "country=US,platform=ios"], {}, "platform") == ["web"]


def test_build_series_ratio_of_sums() -> None:
    aov = SPEC.get("avg_order_value")
    request = SeriesRequest(metric=aov, grain="day", tz=cal.UTC_ZONE, start=at(27, 0), end=at(29, 0))
    plan = plan_reads(SPEC, request)
    revenue, orders = HashRead("revenue", "values"), HashRead("orders", "values")
    snapshot = Snapshot(
        hours={
            revenue: {at(27, 1): {"_": 10.0}, at(27, 2): {"_": 30.0}},
            orders: {at(27, 1): {"_": 1.0}, at(27, 2): {"_": 3.0}},
        },
        published_at={
            at(27, 1): "2026-11-27T02:00:00.000000Z",
            at(27, 2): "2026-11-27T03:00:00.000000Z",
        },
    )
    out = build_series(SPEC, request, plan, snapshot)
    assert out == [
        SeriesData(
            labels={}, points=[(at(27, 0), 10.0), (at(28, 0), None)], complete=[False, False], revised=[False, False]
        )
    ]
    assert snapshot.as_of == "2026-11-27T03:00:00.000000Z"
