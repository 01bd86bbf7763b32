"""Building the SparkSession the job runs in."""

from __future__ import annotations

from pyspark.sql import SparkSession

# Settings every Tally session needs, whatever the master.
BASE_CONF: dict[str, str] = {
    # Buckets are UTC hours; Spark must not shift timestamps into the host's zone.
    "spark.sql.session.timeZone": "UTC",
    # pandas/pyarrow write TIMESTAMP(NANOS) by default, which Spark cannot read as
    # a timestamp; read it as a long and convert (see jobs.source).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # Replace exactly the hour partitions a run writes, never the whole table.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.compression.codec": "zstd",
    # Small driver-side frames go to the JVM as Arrow (jobs.source.local_frame), so
    # executors never need a Python worker; never fall back to pickled rows silently.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # An hour is small: a few shuffle partitions beat the default 200.
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
}


def build_session(master: str, app_name: str = "tally", extra: dict[str, str] | None = None) -> SparkSession:
    """A session for ``master``; local masters also get small-machine defaults."""
    builder = SparkSession.builder.appName(app_name).master(master)
    conf = dict(BASE_CONF)
    if master.startswith("local"):
        conf.update(LOCAL_CONF)
    conf.update(extra or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
