"""Reading a source's hours of raw files into one frame, every column in its declared type.

The files were checked by :mod:`jobs.input_check` (their footers, on the driver);
here they are read in at most a few Spark scans, grouped by how their columns
must be decoded, and every column comes out in its declared type (``double``
from any integer or float, ``long`` from any integer, ``timestamp`` from any
unit, null-typed as nulls), with the hour of the folder each row came from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import reduce
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.input_check import NULL, TIMESTAMP_NANOS, FileEncoding, HourInput
from jobs.partitions import PartitionLayout, layout_hour, partition_layout
from tally.core.spec import Source, quote_column

# The column the job gives each row: the hour of the folder it was read from.
HOUR_COLUMN = "_hour"


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
    return union_all(frames)


def union_all(frames: Sequence[DataFrame]) -> DataFrame:
    """One frame of ``frames`` (at least one), columns matched by name."""
    return reduce(DataFrame.unionByName, frames)


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
    return frame.select(*_normalised(source, encoding), layout_hour(layout).alias(HOUR_COLUMN))


def _read_one_hour(
    spark: SparkSession, source: Source, encoding: FileEncoding, paths: list[Path], hour: datetime
) -> DataFrame:
    frame = spark.read.schema(_read_schema(encoding)).parquet(*[str(p) for p in paths])
    return frame.select(*_normalised(source, encoding), F.lit(hour).cast("timestamp").alias(HOUR_COLUMN))
