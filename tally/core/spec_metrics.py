"""The ``metrics`` section of a spec: each metric, validated into a :class:`Metric`.

Checks a metric's kind, source, dimensions, declared ``slices``, grains, field,
``where``, filter and ratio sides against the sources already parsed; :func:`ratio_problems` then checks
each ratio's sides against the other metrics. A problem names the file, the
metric and the field; the SQL inside (``field``, ``where``) is left to Spark's
analyzer (:mod:`jobs.spec_check`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tally.core.spec_errors import Fail, Problem
from tally.core.spec_model import (
    DEFAULT_KLL_K,
    DEFAULT_LG_NOM_ENTRIES,
    DEFAULT_QUANTILE,
    DISTINCT_SKETCHES,
    GRAINS,
    MAX_WINDOW_DAYS,
    NAME,
    NUMERIC_TYPES,
    Kind,
    Metric,
    Source,
)

# A bare identifier in ``field`` is meant as a column; anything else is an expression.
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
    "slices",
    "sketch",
    "lg_nom_entries",
    "q",
    "kll_k",
}
# Kinds whose ``field`` is a number per row (summed, compared, or ranked).
_NUMERIC_FIELD_KINDS = (Kind.SUM, Kind.MIN, Kind.MAX, Kind.QUANTILE)
_FIELD_PURPOSE = {
    Kind.SUM: "a numeric column or expression to sum",
    Kind.MIN: "a numeric column or expression whose smallest value is kept",
    Kind.MAX: "a numeric column or expression whose largest value is kept",
    Kind.QUANTILE: "a numeric column or expression whose distribution is sketched",
    Kind.COUNT_DISTINCT: "the column or expression counted",
}
# Bounds Spark's sketch functions accept (theta_sketch_agg, kll_sketch_agg_double).
LG_NOM_ENTRIES_RANGE = (4, 26)
KLL_K_RANGE = (8, 65535)


def parse_metric(raw: Any, *, index: int, file: str, sources: Mapping[str, Source]) -> Metric:
    """One entry of ``metrics`` (the ``index``-th) as a Metric; Problem names its first problem."""
    if not isinstance(raw, Mapping):
        raise Problem(f"{file}: metric #{index + 1}: expected a mapping")
    name = raw.get("name")
    where = f"{file}: metric {name!r}" if isinstance(name, str) else f"{file}: metric #{index + 1}"

    def fail(key: str, problem: str) -> Problem:
        return Problem(f"{where}: field {key!r}: {problem}")

    if not isinstance(name, str) or not NAME.match(name):
        raise fail("name", "must be lower_snake_case, starting with a letter")
    unknown = sorted(set(raw) - _METRIC_KEYS, key=str)
    if unknown:
        raise fail(unknown[0], "unknown field")
    for text_field in ("description", "unit"):
        if not isinstance(raw.get(text_field), str) or not raw[text_field].strip():
            raise fail(text_field, "required, a non-empty string")
    try:
        kind = Kind(str(raw.get("kind")))
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

    slices = _parse_slices(raw.get("slices"), kind, dimensions, fail)

    grains = raw.get("grains", list(GRAINS))
    if not isinstance(grains, list) or not grains or any(g not in GRAINS for g in grains):
        raise fail("grains", f"must be a non-empty list drawn from {', '.join(GRAINS)}")

    field_sql: Any = raw.get("field")
    if kind in _FIELD_PURPOSE:
        if not isinstance(field_sql, str) or not field_sql.strip():
            raise fail("field", f"required for kind {kind.value}: {_FIELD_PURPOSE[kind]}")
        field_sql = field_sql.strip()
        if source is not None and _IDENTIFIER.match(field_sql) and field_sql not in source.column_types:
            # A bare name is meant as a column (expressions are checked by Spark, see jobs.spec_check).
            declared = ", ".join(source.column_types)
            raise fail(
                "field", f"{field_sql!r} is not a declared column of source {source.name!r}; declared: {declared}"
            )
        numeric = kind in _NUMERIC_FIELD_KINDS
        if source is not None and numeric and source.column_types.get(field_sql) not in (None, *NUMERIC_TYPES):
            raise fail(
                "field", f"a {kind.value} needs a numeric field; {field_sql!r} is {source.column_types[field_sql]}"
            )
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

    sketch, lg_nom_entries = _parse_distinct_sketch(raw, kind, fail)
    q, kll_k = _parse_quantile(raw, kind, fail)
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
        slices=slices,
        sketch=sketch,
        lg_nom_entries=lg_nom_entries,
        q=q,
        kll_k=kll_k,
    )


def _integer_in(raw: Any, bounds: tuple[int, int]) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool) and bounds[0] <= raw <= bounds[1]


def _parse_distinct_sketch(raw: Mapping[str, Any], kind: Kind, fail: Fail) -> tuple[str, int]:
    """``sketch`` (hll | theta) and theta's ``lg_nom_entries``, on a count_distinct only."""
    sketch = raw.get("sketch", "hll")
    if "sketch" in raw and kind is not Kind.COUNT_DISTINCT:
        raise fail("sketch", "only for kind count_distinct (hll or theta)")
    if sketch not in DISTINCT_SKETCHES:
        raise fail("sketch", f"must be one of {', '.join(DISTINCT_SKETCHES)}")
    lg_nom_entries = raw.get("lg_nom_entries", DEFAULT_LG_NOM_ENTRIES)
    if "lg_nom_entries" in raw:
        if sketch != "theta":
            raise fail("lg_nom_entries", "only with sketch: theta (an HLL sketch's size is the spec's sketch_lg_k)")
        if not _integer_in(lg_nom_entries, LG_NOM_ENTRIES_RANGE):
            low, high = LG_NOM_ENTRIES_RANGE
            raise fail("lg_nom_entries", f"must be an integer from {low} to {high}")
    return str(sketch), int(lg_nom_entries)


def _parse_quantile(raw: Mapping[str, Any], kind: Kind, fail: Fail) -> tuple[float, int]:
    """A quantile's default ``q`` (0 < q < 1) and its KLL sketch's ``kll_k``."""
    for key in ("q", "kll_k"):
        if key in raw and kind is not Kind.QUANTILE:
            raise fail(key, "only for kind quantile")
    q = raw.get("q", DEFAULT_QUANTILE)
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1:
        raise fail("q", "must be a number strictly between 0 and 1 (e.g. 0.95 for the 95th percentile)")
    kll_k = raw.get("kll_k", DEFAULT_KLL_K)
    if not _integer_in(kll_k, KLL_K_RANGE):
        raise fail("kll_k", f"must be an integer from {KLL_K_RANGE[0]} to {KLL_K_RANGE[1]}")
    return float(q), int(kll_k)


def _parse_slices(raw: Any, kind: Kind, dimensions: list[str], fail: Fail) -> tuple[tuple[str, ...], ...] | None:
    """``slices``: the dimension sets to store (the total always is), each sorted; None stores every combination."""
    if raw is None:
        return None
    if kind is Kind.RATIO:
        raise fail("slices", "a ratio stores nothing of its own: declare slices on its numerator and denominator")
    if not isinstance(raw, list) or not raw:
        raise fail("slices", "must be a non-empty list of dimension lists, e.g. [[country, platform], [event_type]]")
    declared: list[tuple[str, ...]] = []
    for number, dims in enumerate(raw, start=1):
        if not isinstance(dims, list) or not dims or not all(isinstance(d, str) for d in dims):
            raise fail(
                "slices", f"set #{number} must be a non-empty list of dimension names (the total is always stored)"
            )
        for dim in dims:
            if dim not in dimensions:
                known = ", ".join(dimensions) or "none"
                raise fail(
                    "slices", f"set #{number} {dims}: {dim!r} is not a dimension of the metric; its dimensions: {known}"
                )
        if len(set(dims)) != len(dims):
            raise fail("slices", f"set #{number} {dims} lists a dimension twice")
        normal = tuple(sorted(dims))
        if normal in declared:
            raise fail(
                "slices",
                f"set #{number} {dims} repeats set #{declared.index(normal) + 1} (order inside a set does not matter)",
            )
        declared.append(normal)
    return tuple(declared)


def _metric_source(raw: Any, kind: Kind, sources: Mapping[str, Source], fail: Fail) -> Source | None:
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


def _parse_ratio_part(raw: Any, part: str, kind: Kind, fail: Fail) -> tuple[str | None, int | None]:
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


def _parse_filter(raw: Any, source: Source | None, fail: Fail) -> tuple[tuple[str, tuple[Any, ...]], ...]:
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


def ratio_problems(metric: Metric, by_name: Mapping[str, Metric], file: str) -> list[str]:
    """The problems of a ratio's sides: missing, a ratio themselves, or lacking its dimensions."""
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
            problem = "must name a stored metric (count, sum, count_distinct, min, max or quantile), not a ratio" + (
                " (a cycle)" if cycle else ""
            )
        elif not set(metric.dimensions) <= set(other.dimensions):
            lacking = sorted(set(metric.dimensions) - set(other.dimensions))
            problem = f"{other.name!r} lacks dimensions {lacking}"
            if cross_source:
                problem += (
                    f" (a cross-source ratio of {sorted({s.source for s in sides.values() if s}, key=str)} "
                    "can only slice by dimensions both sides share)"
                )
        if problem:
            found.append(f"{file}: metric {metric.name!r}: field {part!r}: {problem}")
    return found
