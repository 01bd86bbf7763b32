"""Building the SparkSession the job runs in."""

from __future__ import annotations

from pathlib import Path

import pyspark
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
    # Spark lists more than 32 given files with a distributed job, by default one task per
    # file: an hour of 2,000 small files (a streaming sink's) paid a 2,000-task job, 26 s of
    # the 2-core bench machine, more than reading its rows (P9, docs/performance.md). A few
    # tasks list them in 1.5 s there, and still in parallel against a cluster's file system.
    # Listing decides which files are read, not how they are split into tasks: no result changes.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
    # The sketch aggregations (HLL, theta, KLL) hash their groups in memory until a task
    # holds this many, then sort the rest of its rows. An hour has a few hundred finest
    # slices (264 in the sample), over the default 128: the sort fallback cost a fifth
    # of the finest slices' stage (P1, docs/performance.md). Sketches grow with the
    # values they hold, so a thousand groups of them stay far below a task's memory.
    "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "1024",
    # Small driver-side frames go to the JVM as Arrow (jobs.source.local_frame), so
    # executors never need a Python worker; never fall back to pickled rows silently.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}

# Settings of the in-process (classic) PySpark client, not of the engine: a Connect session refuses them.
CLASSIC_CLIENT_CONF = frozenset(key for key in BASE_CONF if key.startswith("spark.sql.execution.arrow.pyspark."))

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # An hour is small: a few shuffle partitions beat the default 200.
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
}


def connect_server_command(master: str, host: str, port: int) -> list[str]:
    """The command that runs a Spark Connect server in the foreground (pyspark's own script).

    The server is the application: it gets the master, the small-machine defaults
    of a local master and Tally's session settings as its own defaults; each
    client session still sends (and checks) the session settings.
    """
    script = Path(pyspark.__file__).parent / "sbin" / "start-connect-server.sh"
    conf = {
        **BASE_CONF,
        **(LOCAL_CONF if master.startswith("local") else {}),
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
    }
    return ["bash", str(script), "--wait", "--master", master, *[f"--conf={k}={v}" for k, v in conf.items()]]


def build_session(
    master: str,
    app_name: str = "tally",
    extra: dict[str, str] | None = None,
    *,
    remote: str | None = None,
) -> SparkSession:
    """A session for ``master``, or a Spark Connect session on ``remote`` (sc://host:port) when given.

    Local masters also get small-machine defaults. A Connect server was started
    with its own master and resources, so only the session settings are sent, and
    each is read back: a server that refused one (a time zone, say) would shift
    every bucket silently.
    """
    conf = {**BASE_CONF, **(extra or {})}
    if remote:
        # A Connect client always sends local frames as Arrow; the classic client's Arrow switches don't apply.
        conf = {key: value for key, value in conf.items() if key not in CLASSIC_CLIENT_CONF}
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        _require_settings(session, conf, remote)
        return session
    builder = SparkSession.builder.appName(app_name).master(master)
    if master.startswith("local"):
        conf = {**BASE_CONF, **LOCAL_CONF, **(extra or {})}
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def active_session(remote: str | None) -> SparkSession | None:
    """The session this process already runs of the kind ``remote`` asks for (classic or Connect), if any.

    A process that runs one (an embedding application, the test suite) owns it.
    """
    if remote:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        return ConnectSession.getActiveSession()  # type: ignore[return-value]  # the same DataFrame API
    return SparkSession.getActiveSession()


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session: no JVM or SparkContext on this side."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _require_settings(session: SparkSession, conf: dict[str, str], remote: str) -> None:
    refused = {key: value for key, value in conf.items() if session.conf.get(key, None) != value}
    if refused:
        shown = ", ".join(f"{key}={value}" for key, value in refused.items())
        raise RuntimeError(
            f"the Spark Connect server at {remote} did not take the session settings Tally needs: {shown}"
        )
