"""Reading a source's hour of raw files, after checking each file against its declared columns.

Every file's Parquet footer is checked on the driver (metadata only, never rows),
so a missing column or unusable type fails the hour with a message naming the
file and the column instead of a Spark stack trace. Files are then read in at
most a few Spark scans, grouped by how their columns must be decoded, and every
column comes out in its declared type (``double`` from any integer or float,
``long`` from any integer, ``timestamp`` from any unit, null-typed as nulls).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tally.core.layout import PATH_PLACEHOLDERS
from tally.core.spec import Source, quote_column

HOUR_COLUMN = "_hour"


class InputError(ValueError):
    """An input file breaks its source's declared columns; the message names the file and column."""


# How a declared column is physically stored, where Spark needs to know: the
# Spark type it is read as (then cast to the declared type), or "null" for a
# column of Parquet's null type, or "timestamp_ns" for nanosecond timestamps
# (read as a long and converted; Spark's precision is microseconds).
NULL = "null"
TIMESTAMP_NANOS = "timestamp_ns"


@dataclass(frozen=True)
class FileEncoding:
    """How a file stores each declared column (files with one encoding share a Spark scan)."""

    physical: tuple[tuple[str, str], ...]  # (column, read type) in declared order


@dataclass(frozen=True)
class HourInput:
    """A source's files of one hour with their checked encodings (one footer read per file)."""

    hour: datetime
    files: tuple[Path, ...]
    encodings: tuple[FileEncoding, ...]
    rows: int = 0  # from the files' footers: what a full read returns


def inspect_hour(source: Source, hour: datetime, files: Sequence[Path]) -> HourInput:
    """Check every file of an hour against the source's columns; InputError names the first bad one."""
    checked = [_read_footer(path) for path in files]
    return HourInput(
        hour,
        tuple(files),
        tuple(check_schema(path, schema, source) for path, (schema, _) in zip(files, checked, strict=True)),
        sum(rows for _, rows in checked),
    )


def _read_footer(path: Path) -> tuple[pa.Schema, int]:
    try:
        with pq.ParquetFile(path) as parquet:  # one footer read: the Arrow schema and the row count
            return parquet.schema_arrow, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for broken files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def check_footer(path: Path, source: Source) -> FileEncoding:
    """Validate one file's schema against the source's columns."""
    return check_schema(path, _read_footer(path)[0], source)


def check_schema(path: Path, schema: pa.Schema, source: Source) -> FileEncoding:
    """Validate a file's schema (named by ``path`` in errors) against the source's declared columns."""
    names = schema.names
    for column, _ in source.columns:
        if column not in names:
            raise InputError(f"{path}: missing required column {column!r}")
        if names.count(column) > 1:
            raise InputError(f"{path}: column {column!r} appears more than once")
    physical = []
    for column, logical in source.columns:
        arrow_type = schema.field(column).type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        read_as = _read_type(logical, arrow_type)
        if read_as is None:
            raise InputError(f"{path}: column {column!r} has type {arrow_type}, expected {logical}")
        physical.append((column, read_as))
    return FileEncoding(tuple(physical))


_INTEGER_READ_TYPES = {
    pa.int8(): "tinyint",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.uint8(): "smallint",
    pa.uint16(): "int",
    pa.uint32(): "bigint",
    pa.uint64(): "decimal(20,0)",
}


def _read_type(logical: str, arrow_type: pa.DataType) -> str | None:
    """The Spark type a column of ``arrow_type`` is read as for a ``logical`` column; None if unusable."""
    if pa.types.is_null(arrow_type):  # every value null: valid for any type
        return NULL
    if logical == "string":
        return "string" if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) else None
    if logical == "boolean":
        return "boolean" if pa.types.is_boolean(arrow_type) else None
    if logical == "timestamp":
        if not pa.types.is_timestamp(arrow_type):
            return None
        return TIMESTAMP_NANOS if arrow_type.unit == "ns" else "timestamp"
    if logical == "long":
        return _INTEGER_READ_TYPES.get(arrow_type) if pa.types.is_integer(arrow_type) else None
    if logical == "double":
        if pa.types.is_integer(arrow_type):
            return _INTEGER_READ_TYPES.get(arrow_type)
        if pa.types.is_float32(arrow_type):
            return "float"
        if pa.types.is_float64(arrow_type):
            return "double"
        if pa.types.is_decimal(arrow_type):
            return f"decimal({arrow_type.precision},{arrow_type.scale})"
        return None
    raise AssertionError(logical)


def _spark_type(name: str) -> T.DataType:
    return T._parse_datatype_string("bigint" if name == TIMESTAMP_NANOS else name)


def _read_schema(encoding: FileEncoding) -> T.StructType:
    return T.StructType(
        [
            T.StructField(column, _spark_type(read_as), nullable=True)
            for column, read_as in encoding.physical
            if read_as != NULL  # Spark cannot convert Parquet's null type; _normalised supplies the nulls
        ]
    )


def _normalised(source: Source, encoding: FileEncoding) -> list[Column]:
    """The declared columns in their declared types, whatever each file's physical encoding."""
    declared = source.column_types
    columns = []
    for column, read_as in encoding.physical:
        value = F.lit(None) if read_as == NULL else F.col(quote_column(column))
        if read_as == TIMESTAMP_NANOS:
            # Nanoseconds since the epoch -> microsecond timestamp (Spark's precision).
            value = F.timestamp_micros(F.floor(value / 1000).cast("long"))
        columns.append(value.cast(declared[column]).alias(column))
    return columns


# Spark names the file it could not read, e.g. "[FAILED_READ_FILE.NO_HINT] Encountered
# error while reading file file:///data/raw/.../part-0.parquet.  SQLSTATE: KD001".
_READ_FAILURE = re.compile(r"Encountered error while reading file (\S+?)\.?\s")


def read_failure_message(exc: BaseException) -> str | None:
    """``<file>: could not be read (<root cause>)`` for a Spark read failure, else None.

    A file whose footer is fine but whose pages are broken is found only when its
    rows are read, inside Spark; this turns the JVM error into the same kind of
    message the footer check gives.
    """
    match = _READ_FAILURE.search(str(exc))
    if match is None:
        return None
    path = unquote(match.group(1).removeprefix("file://").removeprefix("file:"))
    return f"{path}: could not be read ({_root_cause(exc)})"


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "java_exception", None)
    if cause is None:
        return type(exc).__name__
    while cause.getCause() is not None:
        cause = cause.getCause()
    return str(cause.toString())[:300]


def raw_schema(source: Source) -> T.StructType:
    """The source's declared columns in their Spark types, plus the folder hour."""
    return T.StructType(
        [T.StructField(column, T._parse_datatype_string(logical)) for column, logical in source.columns]
        + [T.StructField(HOUR_COLUMN, T.TimestampType(), nullable=False)]
    )


def local_frame(spark: SparkSession, rows: Sequence[Sequence[object]], schema: T.StructType) -> DataFrame:
    """A small frame of driver-side values that executors read without Python.

    ``spark.createDataFrame(list)`` pickles the rows, and executors unpickle them in
    a Python worker. Through pandas and Arrow (enabled, without fallback, in
    ``jobs.session.BASE_CONF``) the JVM decodes them itself, so a cluster's executors
    need only Java.
    """
    return spark.createDataFrame(pd.DataFrame([tuple(row) for row in rows], columns=schema.names), schema)


def read_hours(spark: SparkSession, source: Source, inputs: Sequence[HourInput]) -> DataFrame:
    """All rows of the source's given hours, in declared types, with the folder hour attached.

    Files are grouped by encoding (checked by :func:`inspect_hour`) so each group is
    one scan. The folder a row came from decides its hour, not its time column. Where
    the source's ``path`` is a chain of ``key=value`` folders (``dt={YYYY}-{MM}-{DD}/hour={HH}``,
    ``year={YYYY}/month={MM}/...``), Spark's partition discovery gives each file its
    folder's values as constants, once per file (parsing each row's file path cost
    about 2 s per million rows, docs/performance.md); any other layout is read one
    hour per scan, with the hour as a literal.
    """
    groups: dict[FileEncoding, list[tuple[Path, datetime]]] = defaultdict(list)
    for hour_input in inputs:
        for path, encoding in zip(hour_input.files, hour_input.encodings, strict=True):
            groups[encoding].append((path, hour_input.hour))
    layout = partition_layout(source.path)
    declared = {column.lower() for column, _ in source.columns}
    if layout is not None and any(key.lower() in declared for key, _ in layout.keys):
        layout = None  # a folder key named like a declared column: Spark would confuse the two
    frames: list[DataFrame] = []
    for encoding, files in groups.items():
        if layout is not None:
            frames.append(_read_partitioned(spark, source, encoding, files, layout))
        else:
            by_hour: dict[datetime, list[Path]] = defaultdict(list)
            for path, hour in files:
                by_hour[hour].append(path)
            frames += [_read_one_hour(spark, source, encoding, paths, hour) for hour, paths in by_hour.items()]
    if not frames:
        return local_frame(spark, [], raw_schema(source))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


@dataclass(frozen=True)
class PartitionLayout:
    """A ``path`` whose hour folders Spark's partition discovery can read.

    ``depth`` folders below the base path, each ``key=<value>``; ``keys`` maps each
    key to what its value holds: ``date`` ({YYYY}-{MM}-{DD}) or one of ``YYYY``,
    ``MM``, ``DD``, ``HH``.
    """

    depth: int
    keys: tuple[tuple[str, str], ...]


_SINGLE = {f"{{{p}}}": p for p in ("YYYY", "MM", "DD", "HH")}


def partition_layout(path: str) -> PartitionLayout | None:
    """The partition layout of a source ``path``, or None when its folders are not all ``key=value``."""
    segments = path.strip("/").split("/")
    first = next(i for i, segment in enumerate(segments) if any(p in segment for p in PATH_PLACEHOLDERS))
    keys = []
    for segment in segments[first:]:
        key, equals, value = segment.partition("=")
        if not equals or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            return None
        if value == "{YYYY}-{MM}-{DD}":
            keys.append((key, "date"))
        elif value in _SINGLE:
            keys.append((key, _SINGLE[value]))
        else:
            return None
    parts = [kind for _, kind in keys]
    components = [p for kind in parts for p in (("YYYY", "MM", "DD") if kind == "date" else (kind,))]
    names = [key for key, _ in keys]
    if sorted(components) != sorted(_SINGLE.values()) or len(set(names)) != len(names):
        return None
    return PartitionLayout(depth=len(segments) - first, keys=tuple(keys))


def _read_partitioned(
    spark: SparkSession,
    source: Source,
    encoding: FileEncoding,
    files: list[tuple[Path, datetime]],
    layout: PartitionLayout,
) -> DataFrame:
    roots = {path.parents[layout.depth] for path, _ in files}  # <root>/<key=value>.../file
    if len(roots) != 1:
        raise ValueError(f"input files must share one base folder, got {sorted(map(str, roots))}")
    partition_fields = [
        T.StructField(key, T.DateType() if kind == "date" else T.IntegerType()) for key, kind in layout.keys
    ]
    schema = T.StructType([*_read_schema(encoding).fields, *partition_fields])
    frame = spark.read.schema(schema).option("basePath", str(roots.pop())).parquet(*[str(p) for p, _ in files])
    return frame.select(*_normalised(source, encoding), _layout_hour(layout).alias(HOUR_COLUMN))


def _layout_hour(layout: PartitionLayout) -> Column:
    """The hour of a row's folder, from the partition columns (constants of each file)."""
    part: dict[str, Column] = {}
    for key, kind in layout.keys:
        if kind == "date":
            part["date"] = F.col(key)
        else:
            part[kind] = F.col(key)
    day = part.get("date")
    if day is None:
        day = F.make_date(part["YYYY"], part["MM"], part["DD"])
    return F.timestamp_seconds(F.unix_date(day).cast("long") * 86400 + part["HH"].cast("long") * 3600)


def _read_one_hour(
    spark: SparkSession, source: Source, encoding: FileEncoding, paths: list[Path], hour: datetime
) -> DataFrame:
    frame = spark.read.schema(_read_schema(encoding)).parquet(*[str(p) for p in paths])
    return frame.select(*_normalised(source, encoding), F.lit(hour).cast("timestamp").alias(HOUR_COLUMN))


def partition_hour() -> Column:
    """The hour of the ``dt``/``hour`` partition columns of Tally's own tables."""
    return F.timestamp_seconds(F.unix_date(F.col("dt").cast("date")).cast("long") * 86400 + F.col("hour") * 3600)
