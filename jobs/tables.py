"""Tally's own tables, written and read by Spark: rollups, statistics and each source's quarantine.

Every table is partitioned by ``dt``/``hour`` (:func:`tally.core.layout.partition`);
a write replaces only the hours it holds, so rerunning an hour replaces exactly
that hour. The folders themselves are named in :mod:`tally.core.layout`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.partitions import partition_columns, partition_hour
from jobs.session import is_connect
from jobs.source import HOUR_COLUMN, local_frame
from jobs.transform import REASON
from tally.core.layout import quarantine_dir, quarantine_hour_dir
from tally.core.spec import Source


def overwrite_partitions(frame: DataFrame, path: Path) -> None:
    """Write ``frame`` under ``path``, replacing only the ``dt``/``hour`` partitions it holds."""
    # Dynamic partition overwrite (see jobs.session): only these hours are replaced.
    frame.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(path))


def write_quarantine(
    spark: SparkSession, data_dir: Path, source: Source, classified: DataFrame, hours: Sequence[datetime]
) -> None:
    """Replace the source's quarantine of ``hours`` with the rows of ``classified`` that have a reason."""
    # An hour whose rerun has no invalid rows must not keep the old quarantine.
    _delete_paths(spark, [quarantine_hour_dir(data_dir, h, source.name) for h in hours])
    invalid = classified.where(F.col(REASON).isNotNull()).select(
        *[c for c in classified.columns if c != HOUR_COLUMN],
        *partition_columns(HOUR_COLUMN),
    )
    # One file per hour: the rows are few, and the read has a task per few input files
    # (63 for an hour of 2,000 small files, P9), each of which would write its own.
    invalid = invalid.repartition("dt", "hour")
    invalid.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(quarantine_dir(data_dir, source.name)))


def read_quarantine(spark: SparkSession, data_dir: Path, source: Source, hours: Sequence[datetime]) -> DataFrame:
    """(``_hour``, ``reason``) of the source's quarantined rows of ``hours``, as just written."""
    folders = [str(folder) for h in hours if (folder := quarantine_hour_dir(data_dir, h, source.name)).is_dir()]
    if not folders:
        schema = T.StructType([T.StructField(HOUR_COLUMN, T.TimestampType()), T.StructField(REASON, T.StringType())])
        return local_frame(spark, [], schema)
    frame = spark.read.option("basePath", str(quarantine_dir(data_dir, source.name))).parquet(*folders)
    return frame.select(partition_hour().alias(HOUR_COLUMN), REASON)


def _delete_paths(spark: SparkSession, paths: Sequence[Path]) -> None:
    """Delete folders through Hadoop's FileSystem, so object stores work too.

    A Spark Connect client has no JVM; it deletes them itself, as it reads the same
    folders to plan and check an hour's files (the server and the client share the
    data folder, e.g. one mount).
    """
    if is_connect(spark):
        for path in paths:
            if path.exists():  # as Hadoop's delete: a missing folder is fine, one that stays is an error
                shutil.rmtree(path)
        return
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a running session always has its JVM
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for path in paths:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(str(path))
        hadoop_path.getFileSystem(conf).delete(hadoop_path, True)
