"""Reading an hour's raw event files, after checking each file against the contract.

Every file's Parquet footer is checked on the driver (metadata only, never rows),
so a missing column or unusable type fails the hour with a message naming the
file and the column instead of a Spark stack trace. Files are then read in at
most a few Spark scans, grouped by how their columns must be decoded.
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

from tally.events import REQUIRED_COLUMNS

HOUR_COLUMN = "_hour"


class InputError(ValueError):
    """An input file breaks the contract; the message names the file and column."""


@dataclass(frozen=True)
class FileEncoding:
    """How a file's columns are physically stored, where Spark needs to know."""

    event_time_nanos: bool
    amount_integer: bool
    # Columns typed null (pandas writes an all-None column so): read as nulls of the contract type.
    null_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class HourInput:
    """An hour's input files with their checked encodings (one footer read per file)."""

    hour: datetime
    files: tuple[Path, ...]
    encodings: tuple[FileEncoding, ...]
    rows: int = 0  # from the files' footers: what a full read returns


def inspect_hour(hour: datetime, files: Sequence[Path]) -> HourInput:
    """Check every file of an hour against the contract; InputError names the first bad one."""
    checked = [_read_footer(path) for path in files]
    return HourInput(
        hour,
        tuple(files),
        tuple(check_schema(path, schema) for path, (schema, _) in zip(files, checked, strict=True)),
        sum(rows for _, rows in checked),
    )


def _read_footer(path: Path) -> tuple[pa.Schema, int]:
    try:
        with pq.ParquetFile(path) as parquet:  # one footer read: the Arrow schema and the row count
            return parquet.schema_arrow, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for broken files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def check_footer(path: Path) -> FileEncoding:
    """Validate one file's schema against the contract."""
    return check_schema(path, _read_footer(path)[0])


def check_schema(path: Path, schema: pa.Schema) -> FileEncoding:
    """Validate a file's schema (named by ``path`` in errors) against the contract."""
    names = schema.names
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise InputError(f"{path}: missing required column {column!r}")
        if names.count(column) > 1:
            raise InputError(f"{path}: column {column!r} appears more than once")
    for column, logical in REQUIRED_COLUMNS.items():
        arrow_type = schema.field(column).type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if not _compatible(logical, arrow_type):
            raise InputError(f"{path}: column {column!r} has type {arrow_type}, expected {logical}")
    time_type = schema.field("event_time").type
    amount_type = schema.field("amount").type
    return FileEncoding(
        event_time_nanos=pa.types.is_timestamp(time_type) and time_type.unit == "ns",
        amount_integer=pa.types.is_integer(amount_type),
        null_columns=tuple(c for c in REQUIRED_COLUMNS if pa.types.is_null(schema.field(c).type)),
    )


def _compatible(logical: str, arrow_type: pa.DataType) -> bool:
    if pa.types.is_null(arrow_type):  # every value null: valid for any type
        return True
    if logical == "string":
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if logical == "timestamp":
        return pa.types.is_timestamp(arrow_type)
    if logical == "double":
        return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)
    raise AssertionError(logical)


def _read_schema(encoding: FileEncoding) -> T.StructType:
    fields = []
    for column in REQUIRED_COLUMNS:
        if column in encoding.null_columns:
            continue  # Spark cannot convert Parquet's null type; _normalised supplies the nulls
        spark_type: T.DataType = T.StringType()
        if column == "event_time":
            spark_type = T.LongType() if encoding.event_time_nanos else T.TimestampType()
        elif column == "amount":
            spark_type = T.LongType() if encoding.amount_integer else T.DoubleType()
        fields.append(T.StructField(column, spark_type, nullable=True))
    return T.StructType(fields)


def _normalised(encoding: FileEncoding) -> list[Column]:
    """Columns in contract types, whatever the file's physical encoding."""

    def column(name: str) -> Column:
        return F.lit(None) if name in encoding.null_columns else F.col(name)

    event_time = column("event_time")
    if encoding.event_time_nanos and "event_time" not in encoding.null_columns:
        # Nanoseconds since the epoch -> microsecond timestamp (Spark's precision).
        event_time = F.timestamp_micros(F.floor(event_time / 1000).cast("long"))
    return [
        column("event_id").cast("string").alias("event_id"),
        event_time.cast("timestamp").alias("event_time"),
        column("user_id").cast("string").alias("user_id"),
        column("session_id").cast("string").alias("session_id"),
        column("event_type").cast("string").alias("event_type"),
        column("amount").cast("double").alias("amount"),
        column("country").cast("string").alias("country"),
        column("platform").cast("string").alias("platform"),
    ]


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


def raw_schema() -> T.StructType:
    """The contract's columns in their Spark types, plus the folder hour."""
    return T.StructType(
        [
            T.StructField(
                c, T.TimestampType() if c == "event_time" else T.DoubleType() if c == "amount" else T.StringType()
            )
            for c in REQUIRED_COLUMNS
        ]
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


def read_hours(spark: SparkSession, inputs: Sequence[HourInput]) -> DataFrame:
    """All rows of the given hours, in contract types, with the folder hour attached.

    Files are grouped by encoding (checked by :func:`inspect_hour`) so each group is one scan.
    """
    groups: dict[FileEncoding, list[tuple[Path, datetime]]] = defaultdict(list)
    for hour_input in inputs:
        for path, encoding in zip(hour_input.files, hour_input.encodings, strict=True):
            groups[encoding].append((path, hour_input.hour))
    frames = [_read_group(spark, encoding, files) for encoding, files in groups.items()]
    if not frames:
        return local_frame(spark, [], raw_schema())
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


# The partition columns Spark reads from each file's ``dt=YYYY-MM-DD/hour=HH`` folder.
_PARTITION_COLUMNS = (T.StructField("dt", T.DateType()), T.StructField("hour", T.IntegerType()))


def _read_group(spark: SparkSession, encoding: FileEncoding, files: list[tuple[Path, datetime]]) -> DataFrame:
    # The folder a row came from decides its hour (the contract), not event_time.
    # Spark's partition discovery gives every file its folder's dt and hour as
    # constants, once per file; parsing each row's file path instead cost about
    # 2 s per million rows (docs/performance.md).
    roots = {path.parents[2] for path, _ in files}  # <root>/dt=.../hour=../file
    if len(roots) != 1:
        raise ValueError(f"input files must share one raw-events folder, got {sorted(map(str, roots))}")
    schema = T.StructType([*_read_schema(encoding).fields, *_PARTITION_COLUMNS])
    frame = spark.read.schema(schema).option("basePath", str(roots.pop())).parquet(*[str(p) for p, _ in files])
    return frame.select(*_normalised(encoding), partition_hour().alias(HOUR_COLUMN))


def partition_hour() -> Column:
    """The hour of the ``dt``/``hour`` partition columns (of any of Tally's tables)."""
    return F.timestamp_seconds(F.unix_date(F.col("dt").cast("date")).cast("long") * 86400 + F.col("hour") * 3600)
