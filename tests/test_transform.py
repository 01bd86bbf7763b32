"""The job's pure transformations, on tiny inline DataFrames."""

from __future__ import annotations

from datetime import UTC, datetime

import datasketches
import pytest
from pyspark.sql import functions as F

from jobs.source import HOUR_COLUMN, raw_schema
from jobs.transform import (
    REASON,
    aggregate,
    counted_events,
    deduplicate,
    finest_slices,
    hour_stats,
    valid_events,
    with_hour_placeholders,
    with_invalid_reason,
)
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import Kind, load_spec

H10 = datetime(2026, 11, 27, 10, tzinfo=UTC)
H11 = datetime(2026, 11, 27, 11, tzinfo=UTC)
SPEC = load_spec(DEFAULT_SPEC_PATH)
SOURCE = SPEC.source("events")


def t(minute: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, 27, hour, minute, tzinfo=UTC)


def raw(spark, rows):
    """rows: (event_id, event_time, user_id, session_id, event_type, amount, country, platform, folder_hour)."""
    return spark.createDataFrame(rows, raw_schema(SOURCE))


def reasons(frame) -> dict[str, str | None]:
    return {r.event_id: r[REASON] for r in frame.select("event_id", REASON).collect()}


def test_each_invalid_rule_gets_its_reason(spark):
    rows = [
        ("ok", t(1), "u", "s", "page_view", None, "US", "web", H10),
        (None, t(1), "u", "s", "page_view", None, "US", "web", H10),
        ("", t(1), "u", "s", "page_view", None, "US", "web", H10),
        ("no_user", t(1), None, "s", "page_view", None, "US", "web", H10),
        ("empty_user", t(1), "", "s", "page_view", None, "US", "web", H10),
        ("no_type", t(1), "u", "s", "", None, "US", "web", H10),
        ("no_time", None, "u", "s", "page_view", None, "US", "web", H10),
        ("early", t(59, hour=9), "u", "s", "page_view", None, "US", "web", H10),
        ("late", t(0, hour=11), "u", "s", "page_view", None, "US", "web", H10),
        ("last_us", t(59).replace(second=59, microsecond=999999), "u", "s", "page_view", None, "US", "web", H10),
        ("nan", t(2), "u", "s", "purchase", float("nan"), "US", "web", H10),
        ("inf", t(2), "u", "s", "purchase", float("inf"), "US", "web", H10),
        ("neg", t(2), "u", "s", "purchase", -1.0, "US", "web", H10),
        ("null_amount", t(2), "u", "s", "purchase", None, "US", "web", H10),
        ("zero", t(2), "u", "s", "purchase", 0.0, "US", "web", H10),
        ("view_nan", t(2), "u", "s", "page_view", float("nan"), "US", "web", H10),
    ]
    got = reasons(with_invalid_reason(raw(spark, rows), SOURCE))
    assert got.pop(None) == "missing_event_id"
    assert got == {
        "ok": None,
        "": "missing_event_id",
        "no_user": "missing_user_id",
        "empty_user": "missing_user_id",
        "no_type": "missing_event_type",
        "no_time": "missing_event_time",
        "early": "event_time_outside_hour",
        "late": "event_time_outside_hour",
        "last_us": None,
        "nan": "invalid_purchase_amount",
        "inf": "invalid_purchase_amount",
        "neg": "invalid_purchase_amount",
        "null_amount": "invalid_purchase_amount",
        "zero": None,
        "view_nan": None,  # amount on other event types is ignored
    }


def test_null_dimensions_become_unknown_and_duplicates_count_once(spark):
    rows = [
        ("e1", t(5), "u1", "s1", "page_view", None, None, None, H10),
        ("e1", t(5), "u1", "s1", "page_view", None, None, None, H10),
        ("e1", t(7), "u1", "s1", "page_view", None, "US", "web", H10),  # a differing copy
        ("e2", t(6), "u2", "s2", "page_view", None, "DE", "ios", H10),
        ("e2", t(6, hour=11), "u2", "s2", "page_view", None, "DE", "ios", H11),  # same id, other hour
    ]
    deduped = deduplicate(valid_events(with_invalid_reason(raw(spark, rows), SOURCE), SOURCE, SPEC), SOURCE)
    got = sorted((r[HOUR_COLUMN].hour, r.event_id, r.country, r.platform) for r in deduped.collect())
    # The earliest copy of e1 wins, deterministically; e2 counts once per hour.
    assert got == [(10, "e1", "unknown", "unknown"), (10, "e2", "DE", "ios"), (11, "e2", "DE", "ios")]


def rollup_rows(spark, rows, hours):
    events = deduplicate(valid_events(with_invalid_reason(raw(spark, rows), SOURCE), SOURCE, SPEC), SOURCE)
    out = aggregate(with_hour_placeholders(events, hours), SPEC, SOURCE).collect()
    return out


def value(rows, metric, hour="10", **labels):
    dims = {"event_type": None, "country": None, "platform": None, **labels}
    found = [r for r in rows if r.metric == metric and r.hour == hour and all(r[d] == v for d, v in dims.items())]
    assert len(found) <= 1
    return found[0].value if found else None


def test_aggregate_counts_sums_and_slices(spark):
    rows = [
        ("p1", t(1), "u1", "s1", "purchase", 10.0, "US", "web", H10),
        ("p2", t(2), "u1", "s1", "purchase", 5.5, "US", "web", H10),
        ("p3", t(3), "u2", "s2", "purchase", 2.0, "DE", "ios", H10),
        ("v1", t(4), "u3", "s3", "page_view", None, "DE", "web", H10),
        ("g1", t(5), "u4", "s4", "signup", None, None, "android", H10),
    ]
    out = rollup_rows(spark, rows, [H10])
    assert value(out, "events") == 5
    assert value(out, "events", event_type="purchase") == 3
    assert value(out, "events", event_type="purchase", country="US", platform="web") == 2
    assert value(out, "revenue") == 17.5
    assert value(out, "revenue", country="US") == 15.5
    assert value(out, "revenue", country="DE", platform="ios") == 2.0
    assert value(out, "orders", platform="web") == 2
    assert value(out, "signups", country="unknown") == 1
    assert value(out, "active_users") == 4
    assert value(out, "purchasers") == 2
    assert value(out, "sessions", platform="web") == 2
    # Slices a metric does not declare are not produced.
    assert value(out, "revenue", event_type="purchase") is None
    assert value(out, "sessions", country="US") is None
    # Zero-valued non-total slices are omitted (absent means 0).
    assert value(out, "orders", country="unknown") is None
    assert {r.dt for r in out} == {"2026-11-27"}


def test_distinct_sketches_are_mergeable_hll(spark):
    rows = [(f"e{i}", t(i % 60), f"u{i % 37}", "s", "page_view", None, "US", "web", H10) for i in range(200)]
    out = rollup_rows(spark, rows, [H10])
    total = next(r for r in out if r.metric == "active_users" and r.country is None and r.platform is None)
    sketch = datasketches.hll_sketch.deserialize(bytes(total.sketch))
    assert sketch.lg_config_k == SPEC.sketch_lg_k
    assert round(sketch.get_estimate()) == 37 == total.value


def test_extremes_quantiles_and_theta_sketches(spark):
    rows = [
        ("p1", t(1), "u1", "s1", "purchase", 10.0, "US", "web", H10),
        ("p2", t(2), "u2", "s1", "purchase", 5.5, "US", "web", H10),
        ("p3", t(3), "u3", "s2", "purchase", 2.0, "DE", "ios", H10),
        ("p4", t(4), "u4", "s3", "purchase", 0.0, "FR", "web", H10),
        ("g1", t(5), "u5", "s4", "signup", None, "DE", "android", H10),
        ("g2", t(6), "u1", "s4", "signup", None, "US", "web", H10),
    ]
    out = rollup_rows(spark, rows, [H10])
    assert value(out, "max_order") == 10.0 and value(out, "max_order", country="DE") == 2.0
    assert value(out, "max_order", country="FR") == 0.0  # a zero is a value here, not "absent"
    assert value(out, "max_order", country="unknown") is None
    # A quantile's value is its sketch's count; the sketch holds the amounts.
    total = next(r for r in out if r.metric == "order_value_p95" and r.country is None and r.platform is None)
    kll = datasketches.kll_doubles_sketch.deserialize(bytes(total.sketch))
    assert total.value == kll.n == 4 and (kll.get_min_value(), kll.get_max_value()) == (0.0, 10.0)
    assert kll.get_quantile(0.5) == 5.5
    us = next(r for r in out if r.metric == "order_value_p95" and r.country == "US" and r.platform is None)
    assert datasketches.kll_doubles_sketch.deserialize(bytes(us.sketch)).n == 2
    # Theta sketches of the declared slices: ids intersect across metrics.
    signups = next(r for r in out if r.metric == "new_users" and r.country is None and r.platform is None)
    buyers = next(r for r in out if r.metric == "buyers" and r.country is None and r.platform is None)
    both = datasketches.theta_intersection()
    for row in (signups, buyers):
        both.update(datasketches.compact_theta_sketch.deserialize(bytes(row.sketch)))
    assert (signups.value, buyers.value, both.get_result().get_estimate()) == (2, 4, 1)  # u1 signed up and bought
    assert value(out, "new_users", country="DE", platform="android") is None  # not a declared slice


def test_quiet_hour_gets_zero_totals(spark):
    rows = [("e1", t(1), "u1", "s1", "page_view", None, "US", "web", H10)]
    out = rollup_rows(spark, rows, [H10, H11])
    quiet = [r for r in out if r.hour == "11"]
    # Every metric has its total, but a max: there is no largest order of none (absent: null).
    extremes = {m.name for m in SPEC.stored if m.kind in (Kind.MIN, Kind.MAX)}
    assert extremes and sorted(r.metric for r in quiet) == sorted(m.name for m in SPEC.stored if m.name not in extremes)
    assert all(r.value == 0 and r.country is None and r.platform is None and r.event_type is None for r in quiet)
    assert value(out, "events") == 1


def test_hour_stats_count_reasons_and_duplicates(spark):
    rows = [
        ("e1", t(1), "u1", "s1", "page_view", None, "US", "web", H10),
        ("e1", t(1), "u1", "s1", "page_view", None, "US", "web", H10),
        ("e2", None, "u1", "s1", "page_view", None, "US", "web", H10),
        ("e3", t(1), "u1", "s1", "purchase", -3.0, "US", "web", H10),
    ]
    classified = with_invalid_reason(raw(spark, rows), SOURCE)
    invalid = classified.where(F.col(REASON).isNotNull())
    valid = deduplicate(valid_events(classified, SOURCE, SPEC), SOURCE)
    finest = finest_slices(with_hour_placeholders(valid, [H10, H11]), SPEC, SOURCE)
    frame = hour_stats(invalid, [H10, H11], {H10: len(rows)}, counted_events(finest), SOURCE)
    stats = {r.hour: r.asDict(recursive=True) for r in frame.collect()}
    ten = stats["10"]
    counts = ("rows_read", "valid_rows", "invalid_rows", "duplicate_rows", "counted_events")
    assert tuple(ten[c] for c in counts) == (4, 2, 2, 1, 1)
    assert ten["invalid_by_reason"] == {
        "missing_event_id": 0,
        "missing_user_id": 0,
        "missing_event_type": 0,
        "missing_event_time": 1,
        "event_time_outside_hour": 0,
        "invalid_purchase_amount": 1,
    }
    assert stats["11"]["rows_read"] == 0


@pytest.mark.parametrize("column", ["event_id", "user_id"])
def test_whitespace_is_not_empty(spark, column):
    # The contract says null or empty; a blank-but-non-empty id is a (strange) valid value.
    row = {"event_id": "e", "user_id": "u"}
    row[column] = " "
    frame = raw(spark, [(row["event_id"], t(1), row["user_id"], "s", "page_view", None, "US", "web", H10)])
    assert with_invalid_reason(frame, SOURCE).where(F.col(REASON).isNull()).count() == 1
