"""Checking a spec's SQL with Spark's analyzer, against each source's declared columns.

No data is read: every expression (a metric's ``field`` and ``where``, a
source's ``rules`` and dimension ``expr``) is analysed over an empty DataFrame
of the source's declared schema. Each problem is one line naming the file, the
source or metric, the field and what is wrong (an unknown column, a syntax
error, a sum over text, a condition that is not boolean), never a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.source import local_frame
from tally.core.spec import Kind, MetricSpec, Source, SpecError

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
            yield owner, "field", metric.field, "numeric:" if metric.kind is Kind.SUM else "any:"
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
