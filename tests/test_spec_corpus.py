"""A corpus of broken specs: each is refused, naming the file, the source or metric, and the field.

Structural problems are found without Spark (`load_spec`); SQL problems by Spark's
analyzer over the declared columns (`jobs.spec_check`). Both `tally check-spec`
and `tally run` refuse every spec with exit code 1, one line per problem, never
a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs.spec_check import sql_problems
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import SpecError, load_spec
from tests.support import specs
from tests.support.cli import CliResult, run_tally, tally_in_process
from tests.support.specs import HOURS

Spec = dict[str, Any]


def _metric(spec: Spec, name: str) -> dict:
    return next(m for m in spec["metrics"] if m["name"] == name)


def _rides(change: Callable[[Spec], None]) -> Spec:
    spec = copy.deepcopy(specs.RIDES_SPEC)
    change(spec)
    return spec


def _shop(change: Callable[[Spec], None]) -> Spec:
    spec = copy.deepcopy(specs.shop_spec(Path("/tmp/tally-corpus-visits")))
    change(spec)
    return spec


def _source(spec: Spec) -> dict:
    return spec["sources"]["rides"]


def _set(target: Callable[[Spec], dict], key: str, value: Any) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        target(spec)[key] = value

    return change


def _cycle(spec: Spec) -> None:
    spec["metrics"] += [
        {
            "name": "a_per_b",
            "description": "x",
            "unit": "x",
            "kind": "ratio",
            "numerator": "b_per_a",
            "denominator": "trips",
        },
        {
            "name": "b_per_a",
            "description": "x",
            "unit": "x",
            "kind": "ratio",
            "numerator": "a_per_b",
            "denominator": "trips",
        },
    ]


# (id, spec, what the message names, is it found by the SQL check)
CORPUS: list[tuple[str, Spec, tuple[str, ...], bool]] = [
    (
        "unknown column in a rule",
        _rides(lambda s: _source(s)["rules"].update(negative_fare="fare_cnts >= 0")),
        ("source 'rides'", "field 'rules'", "fare_cnts"),
        True,
    ),
    (
        "syntax error in where",
        _rides(_set(lambda s: _metric(s, "long_trips"), "where", "distance_km >")),
        ("metric 'long_trips'", "field 'where'", "Syntax error"),
        True,
    ),
    (
        "sum over a string column",
        _rides(_set(lambda s: _metric(s, "fare_total"), "field", "city_code")),
        ("metric 'fare_total'", "field 'field'", "numeric"),
        False,
    ),
    (
        "sum over a string expression",
        _rides(_set(lambda s: _metric(s, "fare_total"), "field", "upper(city_code)")),
        ("metric 'fare_total'", "field 'field'", "a sum needs a number"),
        True,
    ),
    (
        "where that is not boolean",
        _rides(_set(lambda s: _metric(s, "long_trips"), "where", "distance_km + 1")),
        ("metric 'long_trips'", "field 'where'", "not a boolean condition"),
        True,
    ),
    (
        "aggregate as a dimension",
        _rides(lambda s: _source(s)["dimensions"].update(city={"expr": "max(city_code)"})),
        ("source 'rides'", "field 'dimensions'", "row-level"),
        True,
    ),
    (
        "dimension that does not exist",
        _rides(_set(lambda s: _metric(s, "trips"), "dimensions", ["city", "region"])),
        ("metric 'trips'", "field 'dimensions'", "unknown dimension 'region'"),
        False,
    ),
    (
        "ratio of a metric that does not exist",
        _rides(_set(lambda s: _metric(s, "fare_per_trip"), "numerator", "fares")),
        ("metric 'fare_per_trip'", "field 'numerator'", "no metric named 'fares'"),
        False,
    ),
    (
        "unknown type name",
        _rides(lambda s: _source(s)["columns"].update(is_shared="bool")),
        ("source 'rides'", "field 'columns'", "unknown type 'bool'"),
        False,
    ),
    (
        "path without its placeholders",
        _rides(_set(_source, "path", "lake/rides/{YYYY}/{MM}/{DD}")),
        ("source 'rides'", "field 'path'", "{HH}"),
        False,
    ),
    (
        "reserved dimension name",
        _rides(lambda s: _source(s)["dimensions"].update(grain="vehicle")),
        ("source 'rides'", "field 'dimensions'", "reserved"),
        False,
    ),
    ("cyclic ratio", _rides(_cycle), ("metric 'a_per_b'", "field 'numerator'", "a cycle"), False),
    (
        "cross-source ratio without shared dimensions",
        _shop(_set(lambda s: _metric(s, "visit_conversion"), "dimensions", ["status"])),
        ("metric 'visit_conversion'", "field 'denominator'", "cross-source"),
        False,
    ),
    (
        "metric of an unknown source",
        _shop(_set(lambda s: _metric(s, "visits"), "source", "sessions")),
        ("metric 'visits'", "field 'source'", "no source named 'sessions'"),
        False,
    ),
    (
        "source left out with several sources",
        _shop(lambda s: _metric(s, "visits").pop("source")),
        ("metric 'visits'", "field 'source'", "several sources"),
        False,
    ),
    (
        "time column of the wrong type",
        _rides(_set(_source, "time", "rider")),
        ("source 'rides'", "field 'time'", "timestamp"),
        False,
    ),
    (
        "unknown epoch unit",
        _rides(_set(_source, "time", {"column": "started_at_ms", "unit": "ns"})),
        ("source 'rides'", "field 'time'", "unit 'ns'"),
        False,
    ),
    (
        "required column not declared",
        _rides(_set(_source, "required", ["rider", "driver"])),
        ("source 'rides'", "field 'required'", "'driver' is not a declared column"),
        False,
    ),
    (
        "filter on an unknown key",
        _rides(_set(lambda s: _metric(s, "trips"), "filter", {"colour": "red"})),
        ("metric 'trips'", "field 'filter'", "cannot filter on 'colour'"),
        False,
    ),
    (
        "rule named like a built-in reason",
        _rides(lambda s: _source(s)["rules"].update(missing_rider="true")),
        ("source 'rides'", "field 'rules'", "already given"),
        False,
    ),
    (
        "dimension of an undeclared column",
        _rides(lambda s: _source(s)["dimensions"].update(vehicle_kind="vehicl")),
        ("source 'rides'", "field 'dimensions'", "'vehicl' is not a declared column"),
        False,
    ),
]
IDS = [case[0] for case in CORPUS]


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 15 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize(("name", "spec", "names", "by_sql"), CORPUS, ids=IDS)
def test_each_broken_spec_is_refused_naming_source_or_metric_and_field(spark, tmp_path, name, spec, names, by_sql):
    path = specs.write_spec(tmp_path / "broken.yaml", spec)
    if by_sql:
        problems = sql_problems(spark, load_spec(path), path)
    else:
        with pytest.raises(SpecError) as info:
            load_spec(path)
        problems = info.value.problems
    matching = [p for p in problems if all(part in p for part in names)]
    assert matching, problems
    assert all(p.startswith(str(path)) for p in problems)


@pytest.fixture(scope="module")
def rides_hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with one hour of rides, so `tally run` reaches the point where Spark checks the SQL."""
    import numpy as np

    data_dir = tmp_path_factory.mktemp("data")
    specs.write_rides(data_dir, HOURS[0], np.random.default_rng(1), n=50)
    return data_dir


@pytest.mark.slow  # `tally check-spec` child processes, each starting Spark
def test_check_spec_refuses_every_broken_spec_and_passes_good_ones(tmp_path):
    """One `tally check-spec` over the whole corpus (one Spark start) and the good specs."""
    paths = [specs.write_spec(tmp_path / f"broken-{i}.yaml", case[1]) for i, case in enumerate(CORPUS)]
    good = [specs.write_spec(tmp_path / "rides.yaml", specs.RIDES_SPEC), DEFAULT_SPEC_PATH]
    result = run_tally("check-spec", *map(str, paths), *map(str, good), env={})
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("tally check-spec: error: ")]
    for path, (name, _, names, _) in zip(paths, CORPUS, strict=True):
        assert any(f": error: {path}:" in line and all(p in line for p in names) for line in lines), name
    assert all(any(f"{path}:" in line for path in paths) for line in lines)  # the good specs have none
    for path in good:
        assert f"{path}: ok" in result.stdout
    ok = run_tally("check-spec", str(good[0]), env={})
    assert ok.returncode == 0 and "source rides: 8 columns, 3 dimensions, 6 invalid reasons" in ok.stdout, ok.stderr


def _refused_by_tally_run(code: int, out: str, err: str, path: Path, names: tuple[str, ...], rides_hour: Path) -> None:
    assert code == 1, (out[-2000:], err[-2000:])
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.startswith("tally run: error: ")]
    assert any(all(part in line for part in names) and str(path) in line for line in lines), err[-3000:]
    # Nothing was written: the SQL check runs before any data is read.
    assert not (rides_hour / "rollups").exists()


def _run_broken(tmp_path: Path, rides_hour: Path, spec: Spec, monkeypatch, capsys) -> tuple[Path, CliResult]:
    path = specs.write_spec(tmp_path / "broken.yaml", spec)
    argv = ["run", "--hour", HOURS[0].isoformat(), "--no-publish"]
    env = {"TALLY_SPEC_PATH": str(path), "TALLY_DATA_DIR": str(rides_hour), "SPARK_MASTER": "local[1]"}
    return path, tally_in_process(argv, monkeypatch, capsys, **env)


# `tally run` in this process (its main, as the console script calls it): a structural problem
# stops it before Spark starts; an SQL one is found by the analyzer of the suite's session.
STRUCTURAL = [case for case in CORPUS if not case[3]]
BY_SQL = [case for case in CORPUS if case[3]]


@pytest.mark.parametrize(("name", "spec", "names", "by_sql"), STRUCTURAL, ids=[case[0] for case in STRUCTURAL])
def test_tally_run_refuses_each_structurally_broken_spec(
    tmp_path, rides_hour, monkeypatch, capsys, name, spec, names, by_sql
):
    path, result = _run_broken(tmp_path, rides_hour, spec, monkeypatch, capsys)
    _refused_by_tally_run(result.code, result.out, result.err, path, names, rides_hour)


@pytest.mark.parametrize(("name", "spec", "names", "by_sql"), BY_SQL, ids=[case[0] for case in BY_SQL])
def test_tally_run_refuses_each_spec_with_broken_sql(
    spark, tmp_path, rides_hour, monkeypatch, capsys, name, spec, names, by_sql
):
    path, result = _run_broken(tmp_path, rides_hour, spec, monkeypatch, capsys)
    _refused_by_tally_run(result.code, result.out, result.err, path, names, rides_hour)


@pytest.mark.slow  # a `tally` child process: its own interpreter and Spark JVM
def test_the_real_tally_run_prints_the_problem_and_no_traceback(tmp_path, rides_hour):
    _, spec, names, _ = BY_SQL[0]  # reaches Spark's analyzer, the deepest a spec problem goes
    path = specs.write_spec(tmp_path / "broken.yaml", spec)
    env = {"TALLY_SPEC_PATH": str(path), "TALLY_DATA_DIR": str(rides_hour), "SPARK_MASTER": "local[1]"}
    result = run_tally("run", "--hour", HOURS[0].isoformat(), "--no-publish", env=env)
    _refused_by_tally_run(result.returncode, result.stdout, result.stderr, path, names, rides_hour)
