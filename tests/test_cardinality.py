"""The cardinality guard: a dimension keeps its hour's top ``max_values`` values by rows, the rest become ``other``.

A spec of its own (`plays`, not the sample table): ``track`` is user-id-like,
guarded at 5 values, over 50 tracks whose row counts all differ; ``region`` is an
ordinary dimension. The first hour folds, the second (4 tracks) does not. The
job's rollup, the run statistics (returned, stored, published), ``tally status``,
``/health``, ``GET /v1/runs`` and ``tally check-spec --data`` are checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from cache.keys import KeyLayout
from cache.options import PublishOptions
from cache.publish import publish_hours
from dashboard_api import create_app
from jobs.hourly import run_hours
from tally.core.layout import format_hour
from tally.core.rollup import read_hour_rollup
from tally.core.settings import Settings
from tally.core.spec import SpecError, load_spec, parse_spec
from tally.core.spec_model import DEFAULT_MAX_VALUES, OTHER, metric_fingerprint

FOLDING = datetime(2026, 9, 14, 10, tzinfo=UTC)  # 50 tracks
QUIET = FOLDING + timedelta(hours=1)  # 4 tracks: under the limit
HOURS = [FOLDING, QUIET]
TRACKS = 50
MAX_VALUES = 5
LG_K = 12

SPEC: dict[str, Any] = {
    "sketch_lg_k": LG_K,
    "sources": {
        "plays": {
            "path": "streams/plays/{YYYY}{MM}{DD}/{HH}",
            "time": "played_at",
            "id": "play_ref",
            "columns": {
                "play_ref": "string",
                "played_at": "timestamp",
                "listener": "string",
                "track_ref": "string",
                "area": "string",
                "seconds": "double",
            },
            "dimensions": {
                "track": {"column": "track_ref", "max_values": MAX_VALUES},
                "region": {"expr": "lower(area)"},
            },
        }
    },
    "metrics": [
        {"name": "plays", "description": "Plays.", "unit": "plays", "kind": "count", "dimensions": ["track", "region"]},
        {
            "name": "listeners",
            "description": "Listeners.",
            "unit": "people",
            "kind": "count_distinct",
            "field": "listener",
            "dimensions": ["track"],
        },
        {
            "name": "listened",
            "description": "Seconds listened.",
            "unit": "seconds",
            "kind": "sum",
            "field": "seconds",
            "dimensions": ["track", "region"],
        },
    ],
}


def _plays(hour: datetime, tracks: int) -> pd.DataFrame:
    """Track k has k + 1 plays (so every track's count differs); listeners overlap across tracks."""
    rows = []
    for k in range(tracks):
        for j in range(k + 1):
            rows.append(
                {
                    "play_ref": f"{hour:%H}-{k}-{j}",
                    "played_at": pd.Timestamp(hour) + pd.Timedelta(seconds=k * 60 + j),
                    "listener": f"u{(k * 7 + j) % 300}",
                    "track_ref": f"t{k:02d}",
                    "area": "NORTH" if j % 2 else "South",
                    "seconds": float(k + j),
                }
            )
    frame = pd.DataFrame(rows)
    # One duplicate delivery of a folded track's play: de-duplicated before the guard counts rows.
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)


@pytest.fixture(scope="module")
def plays(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[datetime, pd.DataFrame]]:
    """(data dir, spec path, raw rows by hour)."""
    data_dir = tmp_path_factory.mktemp("data")
    raw = {FOLDING: _plays(FOLDING, TRACKS), QUIET: _plays(QUIET, 4)}
    for hour, frame in raw.items():
        folder = data_dir / "streams" / "plays" / f"{hour:%Y%m%d}" / f"{hour:%H}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False, coerce_timestamps="us")
    spec_path = tmp_path_factory.mktemp("spec") / "plays.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return data_dir, spec_path, raw


@pytest.fixture(scope="module")
def computed(spark, plays):
    data_dir, spec_path, _ = plays
    report = run_hours(spark, data_dir, load_spec(spec_path), HOURS)
    assert report.ok and not report.missing, (report.failed, report.missing)
    return report


def _rollup(data_dir: Path, hour: datetime) -> pd.DataFrame:
    return pd.DataFrame(read_hour_rollup(data_dir, hour).rows)


def _by_track(rollup: pd.DataFrame, metric: str) -> dict[str, float]:
    rows = rollup[(rollup["metric"] == metric) & rollup["track"].notna() & rollup["region"].isna()]
    return dict(zip(rows["track"], rows["value"], strict=True))


def _total(rollup: pd.DataFrame, metric: str) -> float:
    rows = rollup[(rollup["metric"] == metric) & rollup["track"].isna() & rollup["region"].isna()]
    (value,) = rows["value"]
    return float(value)


# The folding hour: tracks t45..t49 are the top 5; t00..t44 hold 1 + 2 + ... + 45 plays.
TOP = {f"t{k:02d}": float(k + 1) for k in range(TRACKS - MAX_VALUES, TRACKS)}
FOLDED_TRACKS = [f"t{k:02d}" for k in range(TRACKS - MAX_VALUES)]
ROWS_FOLDED = sum(k + 1 for k in range(TRACKS - MAX_VALUES))


def test_the_guard_keeps_exactly_the_top_values_and_folds_the_rest_into_other(plays, computed) -> None:
    data_dir, _, raw = plays
    rollup = _rollup(data_dir, FOLDING)
    assert _by_track(rollup, "plays") == {**TOP, OTHER: float(ROWS_FOLDED)}
    # Every slice of a guarded dimension holds at most max_values values and `other`.
    assert set(rollup["track"].dropna()) == {*TOP, OTHER}
    # Totals are unchanged by the fold (the duplicate delivery counts once).
    rows = raw[FOLDING].drop_duplicates("play_ref")
    assert _total(rollup, "plays") == len(rows) == sum(TOP.values()) + ROWS_FOLDED
    assert _total(rollup, "listened") == pytest.approx(rows["seconds"].sum())
    folded_rows = rows[rows["track_ref"].isin(FOLDED_TRACKS)]
    assert _by_track(rollup, "listened")[OTHER] == pytest.approx(folded_rows["seconds"].sum())
    # `other` split by the ordinary dimension adds up to the folded rows.
    by_region = rollup[(rollup["metric"] == "plays") & (rollup["track"] == OTHER) & rollup["region"].notna()]
    assert dict(zip(by_region["region"], by_region["value"], strict=True)) == {
        region: float(count) for region, count in folded_rows["area"].str.lower().value_counts().items()
    }


def test_the_distinct_sketch_of_other_is_the_union_of_the_folded_values_users(spark, plays, computed) -> None:
    from pyspark.sql import functions as F

    data_dir, _, raw = plays
    rollup = _rollup(data_dir, FOLDING)
    other = rollup[(rollup["metric"] == "listeners") & (rollup["track"] == OTHER)]
    (sketch,) = other["sketch"]
    rows = raw[FOLDING].drop_duplicates("play_ref")
    folded_users = rows[rows["track_ref"].isin(FOLDED_TRACKS)][["listener"]]
    direct = spark.createDataFrame(folded_users).agg(F.hll_sketch_agg("listener", LG_K).alias("s"))
    expected = direct.select(F.hll_sketch_estimate("s")).first()[0]
    stored = spark.createDataFrame([(bytes(sketch),)], "s binary").select(F.hll_sketch_estimate("s")).first()[0]
    # HLL unions of one lg_k lose nothing: the folded sketches' union is the sketch of their users.
    assert stored == expected
    assert abs(stored - folded_users["listener"].nunique()) <= 0.05 * folded_users["listener"].nunique()
    # The values kept keep their own sketches.
    kept = rollup[(rollup["metric"] == "listeners") & (rollup["track"] == "t49")]
    assert float(kept["value"].iloc[0]) == pytest.approx(rows[rows["track_ref"] == "t49"]["listener"].nunique(), abs=1)


def test_run_statistics_report_the_fold_and_a_quiet_hour_reports_nothing(plays, computed) -> None:
    data_dir, _, _ = plays
    expected = [
        {
            "source": "plays",
            "dimension": "track",
            "distinct_values": TRACKS,
            "max_values": MAX_VALUES,
            "rows_folded": ROWS_FOLDED,
        }
    ]
    assert computed.computed[format_hour(FOLDING)]["folded_dimensions"] == expected
    assert computed.computed[format_hour(QUIET)]["folded_dimensions"] == []
    # The stored statistics say the same (what publish puts in the manifest).
    assert read_hour_rollup(data_dir, FOLDING).stats["folded_dimensions"] == expected
    assert read_hour_rollup(data_dir, QUIET).stats["folded_dimensions"] == []
    # The quiet hour stores its four tracks as they are.
    assert set(_rollup(data_dir, QUIET)["track"].dropna()) == {"t00", "t01", "t02", "t03"}


def test_status_health_and_runs_warn_about_the_folded_dimension(plays, computed, redis_server: str) -> None:
    from tally.app.status import read_status, render

    data_dir, spec_path, _ = plays
    client = redis.Redis.from_url(redis_server)
    layout = KeyLayout(f"{_prefix()}-cardinality")
    try:
        publish_hours(client, layout, data_dir, load_spec(spec_path), HOURS, PublishOptions(superseded_ttl=60))
        status = read_status(client, layout, redis_url=redis_server, runs=10, max_lag_seconds=10**9)
        text = render(status)
        warnings = [line for line in text.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1
        assert "'track'" in warnings[0] and "50 distinct" in warnings[0] and "max_values 5" in warnings[0]
        assert f"{ROWS_FOLDED:,} rows" in warnings[0] and format_hour(FOLDING) in warnings[0]
        assert status.to_json()["cardinality_warnings"][0]["hours"] == [format_hour(FOLDING)]
        settings = Settings(
            redis_url=redis_server,
            redis_prefix=layout.prefix,
            spec_path=spec_path,
            data_dir=data_dir,
            max_lag_seconds=10**9,  # the hours are old: freshness is not what is tested
        )
        with TestClient(create_app(settings)) as api:
            health = api.get("/health").json()
            runs = {run["hour"]: run for run in api.get("/v1/runs").json()["runs"]}
        assert health["status"] == "ok"  # a warning, not an outage
        (warning,) = health["cardinality_warnings"]
        assert {k: warning[k] for k in ("source", "dimension", "distinct_values", "max_values", "rows_folded")} == {
            "source": "plays",
            "dimension": "track",
            "distinct_values": TRACKS,
            "max_values": MAX_VALUES,
            "rows_folded": ROWS_FOLDED,
        }
        assert warning["hours"] == [format_hour(FOLDING)]
        hour_text = FOLDING.strftime("%Y-%m-%dT%H:00:00Z")
        assert runs[hour_text]["folded_dimensions"][0]["rows_folded"] == ROWS_FOLDED
        assert runs[QUIET.strftime("%Y-%m-%dT%H:00:00Z")]["folded_dimensions"] == []
    finally:
        keys = list(client.scan_iter(match=layout.all_keys_pattern(), count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _prefix() -> str:
    from tests.conftest import TEST_PREFIX

    return TEST_PREFIX


def test_check_spec_with_data_reports_each_dimensions_cardinality(spark, plays, capsys) -> None:
    from jobs.spec_check import data_cardinality
    from tally.app.cli import main

    data_dir, spec_path, _ = plays
    found = {d.dimension: d for d in data_cardinality(spark, data_dir, load_spec(spec_path), FOLDING)}
    assert (found["track"].distinct_values, found["track"].rows_folded, found["track"].folds) == (
        TRACKS,
        ROWS_FOLDED,
        True,
    )
    assert (found["region"].distinct_values, found["region"].max_values, found["region"].folds) == (
        2,
        DEFAULT_MAX_VALUES,
        False,
    )
    code = main(["check-spec", str(spec_path), "--data", format_hour(FOLDING), "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 0, out  # a fold is a warning
    track = next(line for line in out.splitlines() if "dimension track" in line)
    assert "50 distinct values (max_values 5)" in track and f"would fold {ROWS_FOLDED:,} rows" in track
    region = next(line for line in out.splitlines() if "dimension region" in line)
    assert "2 distinct values" in region and region.endswith("ok")
    quiet = main(["check-spec", str(spec_path), "--data", format_hour(QUIET), "--data-dir", str(data_dir)])
    assert quiet == 0 and "WARNING" not in capsys.readouterr().out


# Spec validation.


def _with_dimension(body: Any) -> dict[str, Any]:
    document = yaml.safe_load(yaml.safe_dump(SPEC))
    document["sources"]["plays"]["dimensions"]["track"] = body
    return document


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"column": "track_ref", "max_values": 0}, "field 'max_values': 0 must be a whole number of at least 1"),
        ({"column": "track_ref", "max_values": "10"}, "field 'max_values': '10' must be a whole number"),
        ({"column": "track_ref", "max_values": True}, "field 'max_values': True must be a whole number"),
        ({"column": "track_ref", "max_values": 2.5}, "field 'max_values': 2.5 must be a whole number"),
        ({"column": "track_id", "max_values": 5}, "'track_id' is not a declared column"),
        ({"column": "track_ref", "expr": "1", "max_values": 5}, "exactly one of column and expr"),
        ({"max_values": 5}, "exactly one of column and expr"),
        ({"column": "track_ref", "limit": 5}, "unknown field 'limit'; known: column, expr, max_values"),
        ({"expr": "  ", "max_values": 5}, "field 'expr': needs a Spark SQL expression"),
    ],
)
def test_a_bad_max_values_names_file_source_dimension_and_field(body: Any, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_with_dimension(body), source="plays.yaml")
    problem = info.value.problems[0]  # the metrics of the broken source follow, each naming it
    assert problem.startswith("plays.yaml: source 'plays': field 'dimensions': dimension 'track': "), problem
    assert expected in problem


def test_max_values_is_parsed_with_a_default_and_counts_in_the_fingerprint_only_when_set() -> None:
    spec = parse_spec(SPEC, source="plays.yaml")
    source = spec.source("plays")
    assert source.dimension("track").max_values == MAX_VALUES
    assert source.dimension("region").max_values == DEFAULT_MAX_VALUES
    default = parse_spec(_with_dimension("track_ref"), source="plays.yaml")
    spelled = parse_spec(_with_dimension({"column": "track_ref", "max_values": DEFAULT_MAX_VALUES}), source="x")
    other = parse_spec(_with_dimension({"column": "track_ref", "max_values": 6}), source="x")
    expr = parse_spec(_with_dimension({"expr": "track_ref", "max_values": 6}), source="x")
    assert expr.source("plays").dimension("track").sql == "track_ref"

    def fingerprint(of: Any, metric: str) -> str:
        sources = {s.name: s for s in of.sources}
        return metric_fingerprint(sources, of.get(metric), of.sketch_lg_k)

    # The default, written or not, leaves the fingerprint as it was before the guard existed.
    assert fingerprint(default, "plays") == fingerprint(spelled, "plays") != fingerprint(spec, "plays")
    assert fingerprint(spec, "plays") != fingerprint(other, "plays")
