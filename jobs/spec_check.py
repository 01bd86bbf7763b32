"""Checking a spec's SQL with Spark's analyzer, and (on request) its dimensions' cardinality in an hour of data.

For the SQL no data is read: every expression (a metric's ``field`` and ``where``, a
source's ``rules`` and dimension ``expr``) is analysed over an empty DataFrame
of the source's declared schema. Each problem is one line naming the file, the
source or metric, the field and what is wrong (an unknown column, a syntax
error, a sum over text, a condition that is not boolean), never a traceback.

:func:`data_cardinality` (``tally check-spec --data HOUR``) reads one hour's
input the way the job does and tells, per dimension, how many values it takes
and whether the cardinality guard would fold some into ``other``: an explosion
is seen before an hour is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.source import local_frame, read_hours
from jobs.transform import (
    deduplicate,
    finest_slices,
    fold_summary,
    valid_events,
    value_ranks,
    with_hour_placeholders,
    with_invalid_reason,
)
from tally.core.layout import HourNotArrivedError, as_utc, format_hour
from tally.core.spec import Kind, MetricSpec, Source, SpecError

# Kinds whose field must be a number (a count_distinct counts any type).
_NUMERIC_KINDS = (Kind.SUM, Kind.MIN, Kind.MAX, Kind.QUANTILE)

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


def sql_problems(spark: SparkSession, spec: MetricSpec, file: str | Path) -> list[str]:
    """Every SQL problem of the spec (empty when Spark accepts all its expressions)."""
    # pyspark logs every analysis error with its JVM stack; here they are expected answers.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    problems = []
    for source in spec.sources:
        empty = local_frame(
            spark, [], T.StructType([T.StructField(c, T._parse_datatype_string(t)) for c, t in source.columns])
        )
        for owner, key, expression, want in _expressions(spec, source):
            problem = _check(empty, expression, want)
            if problem is not None:
                problems.append(f"{file}: {owner}: field {key!r}: {problem}")
    return problems


def require_valid_sql(spark: SparkSession, spec: MetricSpec, file: str | Path) -> None:
    """Raise :class:`SpecError` listing every SQL problem of the spec."""
    problems = sql_problems(spark, spec, file)
    if problems:
        raise SpecError(problems)


def _expressions(spec: MetricSpec, source: Source) -> Iterator[tuple[str, str, str, str]]:
    """(owner, field, expression, wanted type) for every expression over ``source``."""
    where = f"source {source.name!r}"
    for reason, condition in source.rules:
        yield where, "rules", condition, f"boolean:rule {reason!r}"
    for dimension in source.dimensions:
        if dimension.expr is not None:
            yield where, "dimensions", dimension.expr, f"any:dimension {dimension.name!r}"
    for metric in spec.stored_of(source.name):
        owner = f"metric {metric.name!r}"
        if metric.field is not None:
            yield owner, "field", metric.field, "numeric:" if metric.kind in _NUMERIC_KINDS else "any:"
        if metric.where is not None:
            yield owner, "where", metric.where, "boolean:"


def _check(frame: DataFrame, expression: str, want: str) -> str | None:
    kind, _, label = want.partition(":")
    prefix = f"{label}: " if label else ""
    try:
        fields = frame.selectExpr(expression).schema.fields
    except Exception as exc:  # PySparkException, or a py4j error pyspark does not wrap
        return prefix + _first_line(exc)
    if len(fields) != 1:
        return f"{prefix}{expression!r} is {len(fields)} expressions; give exactly one"
    data_type = fields[0].dataType
    try:
        # A WHERE refuses aggregates, windows and generators: a row-level expression is wanted.
        frame.where(f"(({expression}) IS NULL) OR TRUE")
    except Exception:
        return f"{prefix}{expression!r} is not a row-level expression (no aggregates, windows or generators)"
    if kind == "boolean" and not isinstance(data_type, T.BooleanType):
        return f"{prefix}{expression!r} is {data_type.simpleString()}, not a boolean condition"
    if kind == "numeric" and not isinstance(data_type, _NUMERIC):
        return f"{prefix}a sum needs a number; {expression!r} is {data_type.simpleString()}"
    return None


_SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\s*")


def _first_line(exc: BaseException) -> str:
    """Spark's message without its plan dump and SQLSTATE: what is wrong, and where."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    head = lines[0] if lines else type(exc).__name__
    return _SQLSTATE.sub(" ", head).strip().rstrip(";").strip()


@dataclass(frozen=True)
class DimensionCardinality:
    """A dimension's values in one hour of data, against its ``max_values``."""

    source: str
    dimension: str
    distinct_values: int
    max_values: int
    rows_folded: int  # counted rows the guard would store as ``other``

    @property
    def folds(self) -> bool:
        return self.distinct_values > self.max_values


def data_cardinality(
    spark: SparkSession, data_dir: Path, spec: MetricSpec, hour: datetime
) -> list[DimensionCardinality]:
    """Every stored dimension of every source in ``hour``'s input: values seen, and what the guard would fold.

    The rows are classified and de-duplicated as the job does, so the counts are
    the job's. Raises when a source's folder has not arrived or a file is broken.
    """
    from jobs.hourly import RunReport, plan_inputs  # jobs.hourly imports this module's callers

    hour = as_utc(hour)
    report = RunReport()
    plans = plan_inputs(data_dir, spec, [hour], report)
    if not plans:
        why = report.failed.get(format_hour(hour)) or report.missing.get(format_hour(hour), "not arrived")
        raise HourNotArrivedError(f"--data {format_hour(hour)}: {why}")
    found = []
    for source in spec.sources:
        classified = with_invalid_reason(read_hours(spark, source, [plans[0].inputs[source.name]]), source)
        valid = deduplicate(valid_events(classified, source, spec), source)
        finest = finest_slices(with_hour_placeholders(valid, [hour]), spec, source).persist()
        try:
            for dimension in source.dimensions:
                if dimension.name not in spec.dimensions_of(source.name):
                    continue  # no stored metric slices by it: nothing to guard
                rows = fold_summary(value_ranks(finest, dimension.name), dimension.max_values).collect()
                seen, folded = (int(rows[0]["distinct_values"]), int(rows[0]["rows_folded"])) if rows else (0, 0)
                found.append(DimensionCardinality(source.name, dimension.name, seen, dimension.max_values, folded))
        finally:
            finest.unpersist()
    return found
