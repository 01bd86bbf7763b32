"""The ``sources`` section of a spec: each event table, validated into a :class:`Source`.

Checks the path's placeholders, the declared columns and their types, the time
and id columns, the required columns, the rules and the dimensions. A problem
names the file, the source and the field; the SQL inside (rules, dimension
``expr``) is left to Spark's analyzer (:mod:`jobs.spec_check`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tally.core.layout import PATH_PLACEHOLDERS
from tally.core.spec_errors import Fail, Problem
from tally.core.spec_model import (
    API_PARAMETERS,
    COLUMN_TYPES,
    DEFAULT_MAX_VALUES,
    NAME,
    OTHER,
    RESERVED_COLUMN_PREFIXES,
    RESERVED_COLUMNS,
    ROLLUP_COLUMNS,
    TIME_UNITS,
    Dimension,
    Source,
    TimeColumn,
)

_SOURCE_KEYS = {"path", "time", "id", "columns", "required", "rules", "dimensions"}
_DIMENSION_KEYS = {"column", "expr", "max_values"}


def parse_sources(raw: Any, file: str, problems: list[str]) -> list[Source]:
    """The valid sources of the section; each broken one adds its problem to ``problems``."""
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{file}: field 'sources': required, a mapping of source name to its table")
        return []
    sources = []
    for name, body in raw.items():
        try:
            sources.append(_parse_source(name, body, file))
        except Problem as problem:
            problems.append(str(problem))
    return sources


def _parse_source(name: Any, raw: Any, file: str) -> Source:
    where = f"{file}: source {name!r}"

    def fail(key: str, problem: str) -> Problem:
        return Problem(f"{where}: field {key!r}: {problem}")

    if not isinstance(name, str) or not NAME.match(name):
        raise Problem(f"{where}: the name must be lower_snake_case, starting with a letter (at most 64 characters)")
    if not isinstance(raw, Mapping):
        raise Problem(f"{where}: expected a mapping with path, time, columns and dimensions")
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
        if not isinstance(reason, str) or not NAME.match(reason):
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


def _parse_columns(raw: Any, fail: Fail) -> list[tuple[str, str]]:
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


def _parse_time(raw: Any, types: Mapping[str, str], fail: Fail) -> TimeColumn:
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
    raw: Any, types: Mapping[str, str], time_column: str, id_column: str | None, fail: Fail
) -> list[Dimension]:
    if not isinstance(raw, Mapping):
        raise fail(
            "dimensions", "must be a mapping of dimension name to a column, {column: ...} or {expr: <Spark SQL>}"
        )
    dimensions = []
    for name, body in raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise fail("dimensions", f"dimension {name!r}: the name must be lower_snake_case, starting with a letter")
        if name in API_PARAMETERS or name in ROLLUP_COLUMNS:
            reserved = "an API parameter" if name in API_PARAMETERS else "a rollup column"
            raise fail("dimensions", f"dimension {name!r}: the name is reserved ({reserved}); choose another")
        if name in (time_column, id_column):
            raise fail("dimensions", f"dimension {name!r}: cannot be named like the source's time or id column")
        dimensions.append(_parse_dimension(name, body, types, fail))
    return dimensions


def _parse_dimension(name: str, body: Any, types: Mapping[str, str], fail: Fail) -> Dimension:
    """One dimension: ``column``, ``{column: c}`` or ``{expr: SQL}``, either mapping with ``max_values``."""
    if isinstance(body, str):
        body = {"column": body}
    shape = f"dimension {name!r}: give a declared column, {{column: <name>}} or {{expr: <Spark SQL>}}"
    if not isinstance(body, Mapping):
        raise fail("dimensions", shape)
    unknown = sorted(set(body) - _DIMENSION_KEYS, key=str)
    if unknown:
        raise fail("dimensions", f"dimension {name!r}: unknown field {unknown[0]!r}; known: column, expr, max_values")
    max_values = _parse_max_values(name, body.get("max_values", DEFAULT_MAX_VALUES), fail)
    if ("column" in body) == ("expr" in body):
        raise fail("dimensions", shape + " (exactly one of column and expr)")
    if "column" in body:
        column = body["column"]
        if not isinstance(column, str) or column not in types:
            raise fail("dimensions", f"dimension {name!r}: {column!r} is not a declared column")
        return Dimension(name, column=column, max_values=max_values)
    expr = body["expr"]
    if not isinstance(expr, str) or not expr.strip():
        raise fail("dimensions", f"dimension {name!r}: field 'expr': needs a Spark SQL expression as text")
    return Dimension(name, expr=expr.strip(), max_values=max_values)


def _parse_max_values(name: str, raw: Any, fail: Fail) -> int:
    # bool is an int in Python: `max_values: true` is a mistake, not 1.
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise fail(
            "dimensions",
            f"dimension {name!r}: field 'max_values': {raw!r} must be a whole number of at least 1 "
            f"(values kept an hour by row count; the rest are stored as {OTHER!r}; default {DEFAULT_MAX_VALUES})",
        )
    return raw
