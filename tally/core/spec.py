"""The metric spec: loading, validation and the typed model every component reads.

The spec file (``metrics.yaml`` by default, ``TALLY_SPEC_PATH`` to override) is the
only place a source table or a metric is defined:

* ``sources``: each event table Tally reads, by name: where an hour's files are
  (``path`` with ``{YYYY}``/``{MM}``/``{DD}``/``{HH}``), its time column, an
  optional id that de-duplicates rows within an hour, every column read with its
  type, which rows are invalid (``required`` columns, then the time, then
  ``rules``) and its dimensions (a column or a Spark SQL expression);
* ``metrics``: what is aggregated from which source, by which dimensions.

Everything here is structural: names, types, references and placeholders,
checked without Spark. The SQL inside (``field``, ``where``, ``rules``, dimension
``expr``) is checked against the declared columns by Spark's analyzer in
:mod:`jobs.spec_check`. A spec with problems raises :class:`SpecError`, one line
per problem, each naming the file, the source or metric, and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from tally.core.layout import PATH_PLACEHOLDERS

GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")
MAX_WINDOW_DAYS = 90
DEFAULT_CARDS = 5
# Column types a source may declare, as Spark SQL type names.
COLUMN_TYPES: tuple[str, ...] = ("string", "long", "double", "timestamp", "boolean")
NUMERIC_TYPES: tuple[str, ...] = ("long", "double")
TIME_UNITS: tuple[str, ...] = ("s", "ms", "us")
UNKNOWN = "unknown"  # the value of a dimension that is null
# Query parameters of GET /v1/metrics/{name}: a dimension may not be named like one,
# since any other parameter of a request is a filter on a dimension.
API_PARAMETERS: tuple[str, ...] = ("grain", "start", "end", "group_by", "tz", "window", "limit")
# Columns of the rollup table besides the dimensions.
ROLLUP_COLUMNS: tuple[str, ...] = ("dt", "hour", "metric", "value", "sketch")
# Names the job gives its own columns (and the quarantine's partition columns):
# a source column may not be named so.
RESERVED_COLUMNS: tuple[str, ...] = ("dt", "hour", "reason", "_hour", "_real", "_counted", "_copy")
RESERVED_COLUMN_PREFIXES: tuple[str, ...] = ("_in_", "_g_", "_reason_")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC_KEYS = {
    "name",
    "description",
    "unit",
    "kind",
    "source",
    "field",
    "filter",
    "where",
    "dimensions",
    "numerator",
    "denominator",
    "grains",
    "max_window_days",
}
_SOURCE_KEYS = {"path", "time", "id", "columns", "required", "rules", "dimensions"}
_TOP_KEYS = {"sketch_lg_k", "sources", "metrics", "dashboard"}


class Kind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    COUNT_DISTINCT = "count_distinct"
    RATIO = "ratio"


class SpecError(ValueError):
    """The spec file is invalid: one line per problem, each naming the file, source or metric, and field."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class _Problem(Exception):
    """One problem found while parsing one source or metric (collected into a SpecError)."""


@dataclass(frozen=True)
class TimeColumn:
    """The column that places a row in time: a timestamp, or integer epoch ``unit``s."""

    column: str
    unit: str | None = None  # None: a timestamp column

    def as_dict(self) -> dict[str, str | None]:
        return {"column": self.column, "unit": self.unit}


@dataclass(frozen=True)
class Dimension:
    """A slice key of a source: a column, or a Spark SQL expression over its columns."""

    name: str
    column: str | None = None
    expr: str | None = None

    @property
    def sql(self) -> str:
        """The dimension as Spark SQL (a column is quoted, so any column name works)."""
        return self.expr if self.expr is not None else quote_column(self.column or self.name)


@dataclass(frozen=True)
class Source:
    """One hourly-partitioned Parquet event table, as declared under ``sources``."""

    name: str
    path: str
    time: TimeColumn
    columns: tuple[tuple[str, str], ...]  # (column, type) in declared order
    dimensions: tuple[Dimension, ...] = ()
    id: str | None = None
    required: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()  # (reason, SQL a valid row satisfies)

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason a row of this source can be invalid, in the order they are checked."""
        time = self.time.column
        return (
            *[f"missing_{column}" for column in self.required],
            f"missing_{time}",
            f"{time}_outside_hour",
            *[reason for reason, _ in self.rules],
        )

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)

    def definition(self) -> dict[str, Any]:
        """What decides the rows a metric of this source sees (part of its fingerprint)."""
        return {
            "path": self.path,
            "time": self.time.as_dict(),
            "id": self.id,
            "columns": [list(c) for c in self.columns],
            "required": list(self.required),
            "rules": [list(r) for r in self.rules],
        }


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    kind: Kind
    dimensions: tuple[str, ...]
    grains: tuple[str, ...] = GRAINS
    source: str | None = None  # None only for ratios (their parts have sources)
    field: str | None = None  # a column or Spark SQL expression over the source's columns
    # (dimension or column, allowed values) pairs, all of which must hold.
    filter: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    where: str | None = None  # Spark SQL condition over the source's columns
    numerator: str | None = None
    denominator: str | None = None
    # A ratio's side may be read over a rolling window of its own (e.g. DAU / 30-day actives).
    numerator_window_days: int | None = None
    denominator_window_days: int | None = None
    # Largest `window=<N>d` a request may ask for; 0 means no windows.
    max_window_days: int = MAX_WINDOW_DAYS

    @property
    def is_ratio(self) -> bool:
        return self.kind is Kind.RATIO

    @property
    def is_distinct(self) -> bool:
        return self.kind is Kind.COUNT_DISTINCT

    def slice_dimension_sets(self) -> list[tuple[str, ...]]:
        """Every subset of the metric's dimensions (sorted), the empty total first."""
        dims = tuple(sorted(self.dimensions))
        return [combo for size in range(len(dims) + 1) for combo in combinations(dims, size)]


@dataclass(frozen=True)
class MetricSpec:
    metrics: tuple[Metric, ...]
    sketch_lg_k: int = 14
    sources: tuple[Source, ...] = ()
    cards: tuple[str, ...] = ()  # the dashboard's headline metrics, in order
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # stored metric -> definition fingerprint

    def get(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def source(self, name: str) -> Source:
        found = next((s for s in self.sources if s.name == name), None)
        if found is None:
            raise LookupError(f"the spec has no source {name!r}")
        return found

    @property
    def stored(self) -> tuple[Metric, ...]:
        """Metrics with their own rollup rows (ratios are computed from their parts)."""
        return tuple(m for m in self.metrics if not m.is_ratio)

    def stored_of(self, source: str) -> tuple[Metric, ...]:
        return tuple(m for m in self.stored if m.source == source)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension any metric uses, in the order the sources declare them."""
        used = {d for m in self.metrics for d in m.dimensions}
        names = [d.name for s in self.sources for d in s.dimensions if d.name in used]
        return tuple(dict.fromkeys(names))

    def dimensions_of(self, source: str) -> tuple[str, ...]:
        """The dimensions a source's stored metrics use, in declared order."""
        used = {d for m in self.stored_of(source) for d in m.dimensions}
        return tuple(d.name for d in self.source(source).dimensions if d.name in used)


def quote_column(name: str) -> str:
    """A column name as a Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def metric_fingerprint(spec_sources: Mapping[str, Source], metric: Metric, sketch_lg_k: int) -> str:
    """A short digest of everything that decides a stored metric's numbers.

    Its kind, field, filter, where and dimensions; its source's path, time, id,
    columns, required columns and rules; and the expressions of the dimensions it
    slices or filters by. An hour computed under another fingerprint holds numbers
    of another definition (see the README, "Changing the spec safely").
    """
    source = spec_sources[metric.source or ""]
    used = {*metric.dimensions, *(key for key, _ in metric.filter)}
    definition = {
        "kind": metric.kind.value,
        "field": metric.field,
        "filter": [[key, list(values)] for key, values in metric.filter],
        "where": metric.where,
        "dimensions": list(metric.dimensions),
        "source": source.definition(),
        "dimension_sql": {d.name: d.sql for d in source.dimensions if d.name in used},
    }
    if metric.is_distinct:
        definition["sketch_lg_k"] = sketch_lg_k
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_spec(path: Path) -> MetricSpec:
    """Read and validate a spec file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(document, source=str(path))


def parse_spec(document: Any, *, source: str = "<spec>") -> MetricSpec:
    """Validate a parsed spec document and build the typed model (every problem at once)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("metrics"), list):
        raise SpecError(f"{source}: expected a mapping with a 'metrics' list")
    problems: list[str] = []
    for key in sorted(set(document) - _TOP_KEYS, key=str):
        problems.append(f"{source}: field {key!r}: unknown top-level field; known: {', '.join(sorted(_TOP_KEYS))}")
    lg_k = document.get("sketch_lg_k", 14)
    if not isinstance(lg_k, int) or isinstance(lg_k, bool) or not 4 <= lg_k <= 21:
        problems.append(f"{source}: field 'sketch_lg_k': must be an integer from 4 to 21")
    sources = _parse_sources(document.get("sources"), source, problems)
    by_source = {s.name: s for s in sources}
    metrics: list[Metric] = []
    broken: set[str] = set()  # metrics with a problem: not reported again where they are referenced
    for index, raw in enumerate(document["metrics"]):
        try:
            metrics.append(_parse_metric(raw, index=index, file=source, sources=by_source))
        except _Problem as problem:
            problems.append(str(problem))
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                broken.add(raw["name"])
    names = [m.name for m in metrics]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: metric {name!r}: field 'name': defined more than once")
    by_name = {m.name: m for m in metrics}
    for metric in metrics:
        if metric.is_ratio and not {metric.numerator, metric.denominator} & broken:
            problems += _ratio_problems(metric, by_name, source)
    cards = _parse_cards(document.get("dashboard"), [*names, *broken], source, problems)
    if problems:
        raise SpecError(problems)
    lg_k_value = int(lg_k)
    fingerprints = {m.name: metric_fingerprint(by_source, m, lg_k_value) for m in metrics if not m.is_ratio}
    return MetricSpec(
        metrics=tuple(metrics),
        sketch_lg_k=lg_k_value,
        sources=tuple(sources),
        cards=cards,
        fingerprints=fingerprints,
    )


# --- sources --------------------------------------------------------------------


def _parse_sources(raw: Any, file: str, problems: list[str]) -> list[Source]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{file}: field 'sources': required, a mapping of source name to its table")
        return []
    sources = []
    for name, body in raw.items():
        try:
            sources.append(_parse_source(name, body, file))
        except _Problem as problem:
            problems.append(str(problem))
    return sources


def _parse_source(name: Any, raw: Any, file: str) -> Source:
    where = f"{file}: source {name!r}"

    def fail(key: str, problem: str) -> _Problem:
        return _Problem(f"{where}: field {key!r}: {problem}")

    if not isinstance(name, str) or not _NAME.match(name):
        raise _Problem(f"{where}: the name must be lower_snake_case, starting with a letter (at most 64 characters)")
    if not isinstance(raw, Mapping):
        raise _Problem(f"{where}: expected a mapping with path, time, columns and dimensions")
    unknown = sorted(set(raw) - _SOURCE_KEYS, key=str)
    if unknown:
        raise fail(unknown[0], f"unknown field; known: {', '.join(sorted(_SOURCE_KEYS))}")

    path = raw.get("path")
    if not isinstance(path, str) or not path.strip():
        raise fail("path", "required, the hour's folder with {YYYY}, {MM}, {DD} and {HH}")
    missing = [p for p in PATH_PLACEHOLDERS if p not in path]
    if missing:
        raise fail("path", f"{path!r} lacks {', '.join(missing)}; all of {', '.join(PATH_PLACEHOLDERS)} must appear")
    leftover = re.sub(r"\{(YYYY|MM|DD|HH)\}", "", path)
    if "{" in leftover or "}" in leftover:
        raise fail("path", f"{path!r} has an unknown placeholder; only {', '.join(PATH_PLACEHOLDERS)} are replaced")

    columns = _parse_columns(raw.get("columns"), fail)
    types = dict(columns)
    time = _parse_time(raw.get("time"), types, fail)
    id_column = raw.get("id")
    if id_column is not None:
        if not isinstance(id_column, str) or id_column not in types:
            raise fail("id", f"{id_column!r} is not a declared column")
        if id_column == time.column:
            raise fail("id", "cannot be the time column")

    required = raw.get("required", [])
    if not isinstance(required, list) or not all(isinstance(c, str) for c in required):
        raise fail("required", "must be a list of declared column names")
    for column in required:
        if column not in types:
            raise fail("required", f"{column!r} is not a declared column")
    if len(set(required)) != len(required):
        raise fail("required", "lists a column twice")

    rules = raw.get("rules", {}) or {}
    if not isinstance(rules, Mapping):
        raise fail("rules", "must be a mapping of reason to a Spark SQL condition valid rows satisfy")
    parsed_rules = []
    built_in = {f"missing_{c}" for c in required} | {f"missing_{time.column}", f"{time.column}_outside_hour"}
    for reason, condition in rules.items():
        if not isinstance(reason, str) or not _NAME.match(reason):
            raise fail("rules", f"reason {reason!r} must be lower_snake_case, starting with a letter")
        if reason in built_in:
            raise fail("rules", f"reason {reason!r} is already given by the required columns or the time column")
        if not isinstance(condition, str) or not condition.strip():
            raise fail("rules", f"rule {reason!r} needs a Spark SQL condition as text")
        parsed_rules.append((reason, condition.strip()))

    dimensions = _parse_dimensions(raw.get("dimensions", {}) or {}, types, time.column, id_column, fail)
    return Source(
        name=name,
        path=path.strip(),
        time=time,
        columns=tuple(columns),
        dimensions=tuple(dimensions),
        id=id_column,
        required=tuple(required),
        rules=tuple(parsed_rules),
    )


def _parse_columns(raw: Any, fail: Callable[[str, str], _Problem]) -> list[tuple[str, str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise fail("columns", "required, a mapping of every column read to its type")
    columns = []
    folded: dict[str, str] = {}
    for column, type_name in raw.items():
        if not isinstance(column, str) or not column:
            raise fail("columns", f"column name {column!r} must be non-empty text")
        if type_name not in COLUMN_TYPES:
            raise fail(
                "columns", f"column {column!r}: unknown type {type_name!r}; use one of {', '.join(COLUMN_TYPES)}"
            )
        if column.lower() in RESERVED_COLUMNS or column.lower().startswith(RESERVED_COLUMN_PREFIXES):
            raise fail("columns", f"column {column!r}: the name is reserved for Tally's own columns; leave it out")
        # Spark resolves column names case-insensitively: two such columns would be one.
        if column.lower() in folded:
            raise fail("columns", f"columns {folded[column.lower()]!r} and {column!r} differ only in case")
        folded[column.lower()] = column
        columns.append((column, type_name))
    return columns


def _parse_time(raw: Any, types: Mapping[str, str], fail: Callable[[str, str], _Problem]) -> TimeColumn:
    if isinstance(raw, str):
        if types.get(raw) != "timestamp":
            declared = f"declared {types[raw]}" if raw in types else "not a declared column"
            raise fail(
                "time",
                f"{raw!r} must be a declared timestamp column ({declared}); for epoch numbers use "
                "{column: <name>, unit: s|ms|us}",
            )
        return TimeColumn(raw)
    if isinstance(raw, Mapping) and set(raw) <= {"column", "unit"} and isinstance(raw.get("column"), str):
        column, unit = raw["column"], raw.get("unit")
        if unit is None:
            if types.get(column) != "timestamp":
                raise fail("time", f"{column!r} must be a declared timestamp column, or give unit: s|ms|us")
            return TimeColumn(column)
        if unit not in TIME_UNITS:
            raise fail("time", f"unit {unit!r}: must be one of {', '.join(TIME_UNITS)}")
        if types.get(column) != "long":
            declared = f"declared {types[column]}" if column in types else "not a declared column"
            raise fail("time", f"{column!r} holds epoch {unit}: it must be a declared long column ({declared})")
        return TimeColumn(column, unit)
    raise fail("time", "required: a timestamp column's name, or {column: <name>, unit: s|ms|us}")


def _parse_dimensions(
    raw: Any, types: Mapping[str, str], time_column: str, id_column: str | None, fail: Callable[[str, str], _Problem]
) -> list[Dimension]:
    if not isinstance(raw, Mapping):
        raise fail("dimensions", "must be a mapping of dimension name to a column or {expr: <Spark SQL>}")
    dimensions = []
    for name, body in raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail("dimensions", f"dimension {name!r}: the name must be lower_snake_case, starting with a letter")
        if name in API_PARAMETERS or name in ROLLUP_COLUMNS:
            reserved = "an API parameter" if name in API_PARAMETERS else "a rollup column"
            raise fail("dimensions", f"dimension {name!r}: the name is reserved ({reserved}); choose another")
        if name in (time_column, id_column):
            raise fail("dimensions", f"dimension {name!r}: cannot be named like the source's time or id column")
        if isinstance(body, str):
            if body not in types:
                raise fail("dimensions", f"dimension {name!r}: {body!r} is not a declared column")
            dimensions.append(Dimension(name, column=body))
        elif isinstance(body, Mapping) and set(body) == {"expr"} and isinstance(body["expr"], str) and body["expr"]:
            dimensions.append(Dimension(name, expr=body["expr"].strip()))
        else:
            raise fail("dimensions", f"dimension {name!r}: give a declared column, or {{expr: <Spark SQL>}}")
    return dimensions


# --- metrics --------------------------------------------------------------------


def _parse_metric(raw: Any, *, index: int, file: str, sources: Mapping[str, Source]) -> Metric:
    if not isinstance(raw, Mapping):
        raise _Problem(f"{file}: metric #{index + 1}: expected a mapping")
    name = raw.get("name")
    where = f"{file}: metric {name!r}" if isinstance(name, str) else f"{file}: metric #{index + 1}"

    def fail(key: str, problem: str) -> _Problem:
        return _Problem(f"{where}: field {key!r}: {problem}")

    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", "must be lower_snake_case, starting with a letter")
    unknown = sorted(set(raw) - _METRIC_KEYS, key=str)
    if unknown:
        raise fail(unknown[0], "unknown field")
    for text_field in ("description", "unit"):
        if not isinstance(raw.get(text_field), str) or not raw[text_field].strip():
            raise fail(text_field, "required, a non-empty string")
    try:
        kind = Kind(raw.get("kind"))
    except ValueError:
        raise fail("kind", f"must be one of {', '.join(k.value for k in Kind)}") from None

    source = _metric_source(raw.get("source"), kind, sources, fail)
    dimensions = raw.get("dimensions", [])
    if not isinstance(dimensions, list) or not all(isinstance(d, str) for d in dimensions):
        raise fail("dimensions", "must be a list of dimension names")
    if source is not None:
        known = [d.name for d in source.dimensions]
        for dim in dimensions:
            if dim not in known:
                raise fail(
                    "dimensions",
                    f"unknown dimension {dim!r} of source {source.name!r}; known: {', '.join(known) or 'none'}",
                )
    if len(set(dimensions)) != len(dimensions):
        raise fail("dimensions", "lists a dimension twice")

    grains = raw.get("grains", list(GRAINS))
    if not isinstance(grains, list) or not grains or any(g not in GRAINS for g in grains):
        raise fail("grains", f"must be a non-empty list drawn from {', '.join(GRAINS)}")

    field_sql = raw.get("field")
    if kind in (Kind.SUM, Kind.COUNT_DISTINCT):
        if not isinstance(field_sql, str) or not field_sql.strip():
            what = "a numeric column or expression to sum" if kind is Kind.SUM else "the column or expression counted"
            raise fail("field", f"required for kind {kind.value}: {what}")
        field_sql = field_sql.strip()
        if source is not None and _IDENTIFIER.match(field_sql) and field_sql not in source.column_types:
            # A bare name is meant as a column (expressions are checked by Spark, see jobs.spec_check).
            known = ", ".join(source.column_types)
            raise fail("field", f"{field_sql!r} is not a declared column of source {source.name!r}; declared: {known}")
        if source is not None and kind is Kind.SUM and source.column_types.get(field_sql) not in (None, *NUMERIC_TYPES):
            raise fail("field", f"a sum needs a numeric field; {field_sql!r} is {source.column_types[field_sql]}")
    elif field_sql is not None:
        raise fail("field", f"not allowed for kind {kind.value}")

    condition = raw.get("where")
    if condition is not None:
        if kind is Kind.RATIO:
            raise fail("where", "a ratio takes the conditions of its parts")
        if not isinstance(condition, str) or not condition.strip():
            raise fail("where", "must be a Spark SQL condition as text")
        condition = condition.strip()
    event_filter = _parse_filter(raw.get("filter"), source, fail)
    if kind is Kind.RATIO and event_filter:
        raise fail("filter", "a ratio takes the filters of its parts")
    numerator, numerator_window = _parse_ratio_part(raw.get("numerator"), "numerator", kind, fail)
    denominator, denominator_window = _parse_ratio_part(raw.get("denominator"), "denominator", kind, fail)
    has_part_window = numerator_window is not None or denominator_window is not None
    max_window = raw.get("max_window_days", 0 if has_part_window else MAX_WINDOW_DAYS)
    if not isinstance(max_window, int) or isinstance(max_window, bool) or not 0 <= max_window <= MAX_WINDOW_DAYS:
        raise fail("max_window_days", f"must be an integer from 0 to {MAX_WINDOW_DAYS}")
    if has_part_window and max_window:
        raise fail("max_window_days", "must be 0 when a side of the ratio has its own window")

    return Metric(
        name=name,
        description=raw["description"].strip(),
        unit=raw["unit"].strip(),
        kind=kind,
        dimensions=tuple(dimensions),
        grains=tuple(grains),
        source=source.name if source is not None else None,
        field=field_sql,
        filter=event_filter,
        where=condition,
        numerator=numerator,
        denominator=denominator,
        numerator_window_days=numerator_window,
        denominator_window_days=denominator_window,
        max_window_days=max_window,
    )


def _metric_source(
    raw: Any, kind: Kind, sources: Mapping[str, Source], fail: Callable[[str, str], _Problem]
) -> Source | None:
    if kind is Kind.RATIO:
        if raw is not None:
            raise fail("source", "a ratio reads the sources of its parts")
        return None
    if raw is None:
        if len(sources) == 1:
            return next(iter(sources.values()))
        if not sources:
            raise fail("source", "no valid source to read (see the problems with 'sources')")
        raise fail("source", f"required when the spec has several sources: one of {', '.join(sources)}")
    if raw not in sources:
        raise fail("source", f"no source named {raw!r}; known: {', '.join(sources) or 'none'}")
    return sources[raw]


def _parse_ratio_part(
    raw: Any, part: str, kind: Kind, fail: Callable[[str, str], _Problem]
) -> tuple[str | None, int | None]:
    """A ratio side: a metric name, or ``{metric: name, window_days: N}``."""
    if kind is not Kind.RATIO:
        if raw is not None:
            raise fail(part, "only for kind ratio")
        return None, None
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, Mapping) and isinstance(raw.get("metric"), str) and set(raw) <= {"metric", "window_days"}:
        window = raw.get("window_days")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW_DAYS
        ):
            raise fail(part, f"window_days must be an integer from 1 to {MAX_WINDOW_DAYS}")
        return raw["metric"], window
    raise fail(part, "a ratio needs another metric's name, or {metric: name, window_days: N}")


def _parse_filter(
    raw: Any, source: Source | None, fail: Callable[[str, str], _Problem]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``{key: value or [values]}``: a key is a dimension of the source, else one of its columns."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise fail("filter", "must be a mapping of dimension or column to value(s)")
    parsed = []
    for key, values in sorted(raw.items(), key=lambda item: str(item[0])):
        options = values if isinstance(values, list) else [values]
        if source is not None:
            is_dimension = source.dimension(key) is not None
            if not is_dimension and key not in source.column_types:
                dims = ", ".join(d.name for d in source.dimensions) or "none"
                raise fail("filter", f"cannot filter on {key!r}: not a dimension ({dims}) or column of {source.name!r}")
            if is_dimension:  # dimension values are text
                if not options or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in options):
                    raise fail("filter", f"values for {key!r} must be non-empty strings")
                options = [str(v) for v in options]
                if not all(options):
                    raise fail("filter", f"values for {key!r} must be non-empty strings")
            elif not options or not all(isinstance(v, str | int | float | bool) for v in options):
                raise fail("filter", f"values for column {key!r} must be strings, numbers or booleans")
        parsed.append((key, tuple(options)))
    return tuple(parsed)


def _ratio_problems(metric: Metric, by_name: Mapping[str, Metric], file: str) -> list[str]:
    sides = {part: by_name.get(getattr(metric, part)) for part in ("numerator", "denominator")}
    cross_source = len({side.source for side in sides.values() if side is not None and not side.is_ratio}) > 1
    found = []
    for part, other in sides.items():
        problem = None
        if other is None:
            problem = f"no metric named {getattr(metric, part)!r}"
        elif other.is_ratio:
            # Only stored metrics may be sides, so ratios can never refer to each other in a cycle.
            cycle = metric.name in (other.numerator, other.denominator) or other.name == metric.name
            problem = "must name a count, sum or count_distinct metric, not a ratio" + (" (a cycle)" if cycle else "")
        elif not set(metric.dimensions) <= set(other.dimensions):
            lacking = sorted(set(metric.dimensions) - set(other.dimensions))
            problem = f"{other.name!r} lacks dimensions {lacking}"
            if cross_source:
                problem += (
                    f" (a cross-source ratio of {sorted({s.source for s in sides.values() if s})} "
                    "can only slice by dimensions both sides share)"
                )
        if problem:
            found.append(f"{file}: metric {metric.name!r}: field {part!r}: {problem}")
    return found


def _parse_cards(raw: Any, names: list[str], file: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return tuple(names[:DEFAULT_CARDS])
    if not isinstance(raw, Mapping) or set(raw) != {"cards"} or not isinstance(raw["cards"], list):
        problems.append(f"{file}: field 'dashboard': must be {{cards: [metric, ...]}}")
        return ()
    for card in raw["cards"]:
        if card not in names:
            problems.append(f"{file}: field 'dashboard': card {card!r} is not a metric of the spec")
    return tuple(c for c in raw["cards"] if c in names)
