"""Declared ``slices``: a metric stores only the dimension sets it names, and still answers every query.

One table of our own (``trades``: epoch-millisecond times, four dimensions, one
of them an expression) is computed by the real Spark job under two specs that
differ only in ``slices``: one declares them (a ratio's parts declare different
ones), the other stores every combination. Both are published to Redis and served
by the real app; hypothesis then asks both random filter/group_by/grain/limit
queries and requires identical points wherever a declared set covers the query,
and ``400 slice_not_stored`` exactly where none does.
"""

from __future__ import annotations

import copy
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from dashboard_api.calendar import UTC_ZONE
from dashboard_api.errors import ApiError
from dashboard_api.plan import Cover, HashRead, ReadPlan, plan_reads, plan_values
from dashboard_api.requests import SeriesRequest, ValuesRequest
from jobs.hourly import run_hours
from tally.core.layout import ROLLUPS_HOURLY
from tally.core.settings import DEFAULT_SPEC_PATH, Settings
from tally.core.spec import SpecError, load_spec, parse_spec
from tests.conftest import TEST_PREFIX, delete_prefix
from tests.support.specs import write_spec

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday, in the past: points can be complete
HOURS = [T0 + timedelta(hours=i) for i in range(26)]  # all of Nov 2 (a day aggregate) and two hours of Nov 3
VALUES = {
    "venue": ["xnas", "xlon", "xtks"],
    "asset": ["aapl", "msft", "bp", "sony"],
    "side": ["buy", "sell"],
    "tier": ["gold", "silver", "std"],
}
DIMENSIONS = list(VALUES)
# Each stored metric's declared sets (order inside a set does not matter).
DECLARED: dict[str, list[list[str]]] = {
    "trades": [["venue", "asset"], ["side"], ["tier", "asset", "side"]],
    "notional": [["venue", "side"], ["venue", "asset", "tier"]],
    "traders": [["asset"], ["venue", "asset", "side", "tier"]],
}
PARTS = {"trades": ["trades"], "notional": ["notional"], "traders": ["traders"], "per_trade": ["notional", "trades"]}


def trades_spec(raw_root: Path, declared: bool) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = [
        {"name": "trades", "description": "Trades.", "unit": "trades", "kind": "count"},
        {"name": "notional", "description": "Notional.", "unit": "currency", "kind": "sum", "field": "qty * px"},
        {"name": "traders", "description": "Traders.", "unit": "traders", "kind": "count_distinct", "field": "who"},
        {
            "name": "per_trade",
            "description": "Notional per trade.",
            "unit": "currency",
            "kind": "ratio",
            "numerator": "notional",
            "denominator": "trades",
        },
    ]
    for metric in metrics:
        metric["dimensions"] = DIMENSIONS
        if declared and metric["name"] in DECLARED:
            metric["slices"] = DECLARED[metric["name"]]
    return {
        "sketch_lg_k": 12,
        "sources": {
            "fills": {
                "path": str(raw_root / "fills" / "{YYYY}" / "{MM}" / "{DD}" / "{HH}"),
                "time": {"column": "at_ms", "unit": "ms"},
                "columns": {
                    "at_ms": "long",
                    "who": "string",
                    "mic": "string",
                    "ticker": "string",
                    "side_code": "string",
                    "account_tier": "string",
                    "qty": "long",
                    "px": "long",
                },
                "dimensions": {
                    "venue": "mic",
                    "asset": "ticker",
                    "side": {"expr": "lower(side_code)"},
                    "tier": "account_tier",
                },
            }
        },
        "metrics": metrics,
    }


def write_fills(raw_root: Path, seed: int = 15) -> None:
    """A few dozen fills an hour; integer notionals, so every sum is exact in any order."""
    rng = np.random.default_rng(seed)
    for hour in HOURS:
        n = int(rng.integers(5, 40))
        folder = raw_root / "fills" / f"{hour:%Y}" / f"{hour:%m}" / f"{hour:%d}" / f"{hour:%H}"
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "at_ms": pa.array(int(hour.timestamp() * 1000) + rng.integers(0, 3_600_000, n), pa.int64()),
                "who": [f"t{int(i)}" for i in rng.integers(0, 60, n)],
                "mic": rng.choice(VALUES["venue"], n).tolist(),
                "ticker": rng.choice(VALUES["asset"], n).tolist(),
                "side_code": rng.choice(["BUY", "Sell"], n).tolist(),
                "account_tier": rng.choice(VALUES["tier"], n).tolist(),
                "qty": pa.array(rng.integers(1, 500, n), pa.int64()),
                "px": pa.array(rng.integers(1, 900, n), pa.int64()),
            }
        )
        pq.write_table(table, folder / "part-0.parquet")


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory: pytest.TempPathFactory, redis_server: str):
    """{"declared" | "every": (app client, rollup dir)}: one table, two specs, computed once, served by the app."""
    raw_root = tmp_path_factory.mktemp("raw")
    write_fills(raw_root)
    client = redis.Redis.from_url(redis_server)
    out: dict[str, tuple[TestClient, Path]] = {}
    layouts = []
    try:
        for name, declared in (("declared", True), ("every", False)):
            data_dir = tmp_path_factory.mktemp(f"data-{name}")
            path = write_spec(data_dir / "trades.yaml", trades_spec(raw_root, declared))
            spec = load_spec(path)
            report = run_hours(spark, data_dir, spec, HOURS)
            assert report.ok and not report.missing, (report.failed, report.missing)
            layout = KeyLayout(f"{TEST_PREFIX}-slices-{name}-{os.getpid()}")
            layouts.append(layout)
            publish_hours(client, layout, data_dir, spec, HOURS, PublishOptions(superseded_ttl=60))
            app_settings = Settings(redis_url=redis_server, redis_prefix=layout.prefix, spec_path=path)
            out[name] = (TestClient(create_app(app_settings)).__enter__(), data_dir / ROLLUPS_HOURLY)
        yield out
    finally:
        for api, _ in out.values():
            api.__exit__(None, None, None)
        for layout in layouts:
            delete_prefix(client, layout)
        client.close()


def covered(metric: str, dims: set[str]) -> bool:
    """The oracle, from the declared lists alone: every stored part stores a set containing ``dims``."""
    return all(not dims or any(dims <= set(s) for s in DECLARED[part]) for part in PARTS[metric])


# --- the property ---------------------------------------------------------------------------


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    metric = draw(st.sampled_from(sorted(PARTS)))
    grain = draw(st.sampled_from(["hour", "day"]))
    params: dict[str, str] = {"grain": grain}
    if grain == "hour":
        first = draw(st.integers(0, 25))
        length = draw(st.integers(1, 6))  # may run past the computed hours: null points
        start = T0 + timedelta(hours=first)
        params |= {
            "start": f"{start:%Y-%m-%dT%H:00:00Z}",
            "end": f"{start + timedelta(hours=length):%Y-%m-%dT%H:00:00Z}",
        }
    else:
        first_day = draw(st.integers(1, 3))
        last_day = draw(st.integers(first_day + 1, 4))
        params |= {"start": f"2026-11-0{first_day}", "end": f"2026-11-0{last_day}"}
        params["tz"] = draw(st.sampled_from(["UTC", "Europe/Berlin"]))  # Berlin's days read edge hours
        window = draw(st.sampled_from([None, "1d", "2d"]))
        if window:
            params["window"] = window
    filtered = draw(st.lists(st.sampled_from(DIMENSIONS), unique=True, max_size=3))
    for dim in filtered:
        params[dim] = draw(st.sampled_from([*VALUES[dim], "zzz"]))  # zzz: a value never seen
    rest = [d for d in DIMENSIONS if d not in filtered]
    group_by = draw(st.sampled_from([None, *rest]))
    if group_by is not None:
        params["group_by"] = group_by
        limit = draw(st.sampled_from([None, 1, 2, 3]))
        if limit is not None:
            params["limit"] = str(limit)
    return metric, params


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries())
def test_declared_slices_answer_like_every_combination(served, query: tuple[str, dict[str, str]]) -> None:
    metric, params = query
    (declared, _), (every, _) = served["declared"], served["every"]
    reference = every.get(f"/v1/metrics/{metric}", params=params)
    assert reference.status_code == 200, reference.text
    answer = declared.get(f"/v1/metrics/{metric}", params=params)
    dims = {d for d in DIMENSIONS if d in params} | ({params["group_by"]} if "group_by" in params else set())
    if covered(metric, dims):
        assert answer.status_code == 200, answer.text
        assert answer.json()["series"] == reference.json()["series"]
    else:
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "slice_not_stored"
        # It names the part that lacks the set and the sets that part stores.
        lacking = next(p for p in PARTS[metric] if not covered(p, dims))
        assert repr(lacking) in error["message"]
        for stored in DECLARED[lacking]:
            assert f"[{', '.join(sorted(stored))}]" in error["message"]


def test_a_merged_answer_is_not_empty(served) -> None:
    """The property means something: a merged query answers numbers, per group value, like the reference."""
    params = {"grain": "day", "start": "2026-11-02", "end": "2026-11-03", "group_by": "tier", "venue": "xnas"}
    (declared, _), (every, _) = served["declared"], served["every"]
    for metric in ("notional", "traders"):  # from (asset, tier, venue) and from all four
        body = declared.get(f"/v1/metrics/{metric}", params=params).json()
        assert [s["labels"]["tier"] for s in body["series"]] == ["gold", "silver", "std"]
        assert all(s["points"][0]["value"] and s["points"][0]["complete"] for s in body["series"])
        assert body["series"] == every.get(f"/v1/metrics/{metric}", params=params).json()["series"]


def test_dimension_values_are_the_same(served) -> None:
    (declared, _), (every, _) = served["declared"], served["every"]
    params = {"start": "2026-11-02T05:00:00Z", "end": "2026-11-03T02:00:00Z"}
    for metric, dim in itertools.product(sorted(PARTS), DIMENSIONS):
        answer = declared.get(f"/v1/metrics/{metric}/values/{dim}", params=params)
        reference = every.get(f"/v1/metrics/{metric}/values/{dim}", params=params)
        assert answer.status_code == reference.status_code == 200, answer.text
        assert answer.json()["values"] == reference.json()["values"]


def test_catalogue_lists_the_stored_sets(served) -> None:
    (declared, _), (every, _) = served["declared"], served["every"]
    listed = {m["name"]: m["slices"] for m in declared.get("/v1/metrics").json()["metrics"]}
    assert listed["trades"] == [[], ["asset", "venue"], ["side"], ["asset", "side", "tier"]]
    assert listed["traders"] == [[], ["asset"], ["asset", "side", "tier", "venue"]]
    assert listed["per_trade"] == [[]]  # its parts store no other set in common
    every_listed = {m["name"]: m["slices"] for m in every.get("/v1/metrics").json()["metrics"]}
    assert all(len(sets) == 16 for sets in every_listed.values())  # every combination of four dimensions


def test_the_job_keeps_exactly_the_stored_sets(served) -> None:
    """Each metric's rollup rows split by exactly its stored sets: the dimensions' null patterns."""
    for name, expected in (
        ("declared", {m: {(), *(tuple(sorted(s)) for s in sets)} for m, sets in DECLARED.items()}),
        ("every", {m: set(_subsets(DIMENSIONS)) for m in DECLARED}),
    ):
        rollup = pd.read_parquet(served[name][1])
        for metric, sets in expected.items():
            rows = rollup[rollup["metric"] == metric]
            patterns = {tuple(sorted(d for d in DIMENSIONS if pd.notna(r[d]))) for _, r in rows.iterrows()}
            assert patterns == sets, (name, metric)


def _subsets(dims: list[str]) -> list[tuple[str, ...]]:
    return [tuple(sorted(c)) for size in range(len(dims) + 1) for c in itertools.combinations(dims, size)]


# --- the spec -------------------------------------------------------------------------------


def _document(**trades: Any) -> dict[str, Any]:
    document = trades_spec(Path("/data"), declared=True)
    document["metrics"][0].update(trades)
    return document


def test_slices_are_normalised_and_cover_from_the_smallest_set() -> None:
    spec = parse_spec(_document(), source="trades.yaml")
    trades = spec.get("trades")
    assert trades.slices == (("asset", "venue"), ("side",), ("asset", "side", "tier"))
    assert trades.slice_dimension_sets() == [(), ("asset", "venue"), ("side",), ("asset", "side", "tier")]
    assert trades.covering_set(["venue", "asset"]) == ("asset", "venue")  # stored itself
    assert trades.covering_set(["asset"]) == ("asset", "venue")  # the smallest superset
    assert trades.covering_set(["tier"]) == ("asset", "side", "tier")
    assert trades.covering_set([]) == ()
    assert trades.covering_set(["venue", "tier"]) is None
    tied = parse_spec(_document(slices=[["asset", "tier"], ["asset", "side"]])).get("trades")
    assert tied.covering_set(["asset"]) == ("asset", "tier")  # ties: the first declared


def test_undeclared_metrics_store_every_combination_and_keep_their_fingerprints() -> None:
    spec = load_spec(DEFAULT_SPEC_PATH)
    declared = {m.name for m in spec.metrics if m.slices is not None}
    assert declared == {"order_value_p95"}  # issue 16's quantile; the older metrics declare none
    assert spec.get("revenue").slice_dimension_sets() == [(), ("country",), ("platform",), ("country", "platform")]
    # Computed before `slices` existed: a deployment's stored hours stay current.
    assert spec.fingerprints["revenue"] == "8eaf37ea0069"
    assert spec.fingerprints["active_users"] == "9cc5684745c7"
    plain = parse_spec(_document(slices=None))
    assert plain.get("trades").slices is None  # `slices: null` is the default


def test_declaring_slices_changes_only_that_metrics_fingerprint() -> None:
    undeclared = trades_spec(Path("/data"), declared=False)
    base = parse_spec(undeclared)
    declared = copy.deepcopy(undeclared)
    declared["metrics"][0]["slices"] = [["venue", "side"]]
    changed = parse_spec(declared)
    assert {m for m in base.fingerprints if base.fingerprints[m] != changed.fingerprints[m]} == {"trades"}
    reordered = copy.deepcopy(undeclared)
    reordered["metrics"][0]["slices"] = [["side", "venue"]]  # the same set
    assert parse_spec(reordered).fingerprints == changed.fingerprints


@pytest.mark.parametrize(
    ("slices", "problem"),
    [
        ([["venue", "colour"]], r"set #1 \['venue', 'colour'\]: 'colour' is not a dimension of the metric"),
        ([["venue"], []], r"set #2 must be a non-empty list of dimension names \(the total is always stored\)"),
        ([["side", "side"]], r"set #1 \['side', 'side'\] lists a dimension twice"),
        ([["venue", "asset"], ["asset", "venue"]], r"set #2 \['asset', 'venue'\] repeats set #1"),
        ([], "must be a non-empty list of dimension lists"),
        ("venue", "must be a non-empty list of dimension lists"),
        ([[1]], "set #1 must be a non-empty list of dimension names"),
    ],
)
def test_invalid_slices_name_the_file_metric_and_set(tmp_path: Path, slices: Any, problem: str) -> None:
    path = write_spec(tmp_path / "trades.yaml", _document(slices=slices))
    with pytest.raises(SpecError, match=rf"trades\.yaml: metric 'trades': field 'slices': {problem}"):
        load_spec(path)


def test_slices_of_a_dimension_the_metric_lacks_are_refused() -> None:
    document = _document(dimensions=["venue", "side"], slices=[["venue", "tier"]])
    with pytest.raises(SpecError, match=r"'tier' is not a dimension of the metric; its dimensions: venue, side"):
        parse_spec(document, source="trades.yaml")


def test_a_ratio_may_not_declare_slices() -> None:
    document = _document()
    document["metrics"][3]["slices"] = [["venue"]]
    with pytest.raises(SpecError) as info:
        parse_spec(document, source="trades.yaml")
    assert info.value.problems == [
        "trades.yaml: metric 'per_trade': field 'slices': a ratio stores nothing of its own: "
        "declare slices on its numerator and denominator"
    ]


# --- the plan -------------------------------------------------------------------------------


def test_the_plan_merges_only_where_the_set_is_not_stored() -> None:
    spec = parse_spec(trades_spec(Path("/data"), declared=True))

    def plan(metric: str, **extra: Any) -> ReadPlan:
        request = SeriesRequest(spec.get(metric), "hour", UTC_ZONE, T0, T0 + timedelta(hours=1), **extra)
        return plan_reads(spec, request)

    exact = plan("trades", filters={"venue": "xnas", "asset": "bp"})  # a stored set: today's exact reads
    assert exact.covers == {} and exact.slices == ("asset=bp,venue=xnas",)
    merged = plan("trades", filters={"asset": "bp"})
    assert merged.covers == {"trades": Cover(("asset",), ("asset", "venue"))} and merged.slices is None
    distinct = plan("traders", filters={"side": "buy"})  # one hour, but merged: sketches, not estimates
    assert set(distinct.hours) == {HashRead("traders", "sketches")}
    ratio = plan("per_trade", group_by="side")  # trades stores (side); notional merges (side, venue)
    assert ratio.covers == {"notional": Cover(("side",), ("side", "venue"))}
    with pytest.raises(ApiError) as info:
        plan("per_trade", filters={"tier": "gold", "venue": "xnas"})
    assert info.value.code == "slice_not_stored"
    assert info.value.message == (
        "ratio 'per_trade': its part 'trades' stores no slice set containing [tier, venue] (the filters and "
        "group_by); it stores: []; [asset, venue]; [side]; [asset, side, tier]"
    )


def test_dimension_values_need_a_stored_set_with_the_dimension() -> None:
    spec = parse_spec(_document(slices=[["side"]]))
    request = ValuesRequest(spec.get("trades"), "venue", UTC_ZONE, T0, T0 + timedelta(hours=1))
    with pytest.raises(ApiError, match=r"metric 'trades' stores no slice set containing \[venue\].*: \[\]; \[side\]"):
        plan_values(spec, request)
    assert plan_values(spec, ValuesRequest(spec.get("trades"), "side", UTC_ZONE, T0, T0)).covers == {}
