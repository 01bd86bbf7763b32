"""The hourly job's entry point: read hours, write rollups, quarantine and statistics.

This is the only module of ``jobs`` that does I/O. ``run_hours`` is what
``tally run``, ``tally backfill`` and the Airflow DAGs call; ``jobs/main.py`` is
the same thing for ``spark-submit``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.source import (
    HOUR_COLUMN,
    HourInput,
    InputError,
    inspect_hour,
    local_frame,
    partition_hour,
    read_failure_message,
    read_hours,
)
from jobs.transform import (
    REASON,
    counted_events,
    deduplicate,
    finest_slices,
    hour_stats,
    rollup_from_finest,
    valid_events,
    with_hour_placeholders,
    with_invalid_reason,
)
from tally.faults import checkpoint
from tally.layout import (
    QUARANTINE,
    ROLLUPS_HOURLY,
    ROLLUPS_STATS,
    as_utc,
    built_fingerprints,
    format_hour,
    input_fingerprint,
    quarantine_hour_dir,
    raw_hour_dir,
    raw_parquet_files,
)
from tally.settings import Settings
from tally.spec import MetricSpec, load_spec

log = logging.getLogger(__name__)


class HourNotArrivedError(RuntimeError):
    """The hour's input folder does not exist yet; nothing is computed or published."""


@dataclass
class RunReport:
    computed: dict[str, dict[str, Any]] = field(default_factory=dict)
    computed_hours: list[datetime] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_inputs(data_dir: Path, hours: Sequence[datetime], report: RunReport) -> list[HourInput]:
    """The hours that can run; missing and broken ones are recorded (and logged) in ``report``."""
    inputs = []
    for hour in hours:
        folder = raw_hour_dir(data_dir, hour)
        if not folder.is_dir():
            report.missing[format_hour(hour)] = f"input folder {folder} does not exist (hour not arrived)"
            log.warning("hour %s skipped: %s", format_hour(hour), report.missing[format_hour(hour)])
            continue
        try:
            inputs.append(inspect_hour(hour, raw_parquet_files(data_dir, hour)))
        except InputError as exc:
            report.failed[format_hour(hour)] = str(exc)
            log.error("hour %s failed: %s", format_hour(hour), exc)
    return inputs


def run_hours(spark: SparkSession, data_dir: Path, spec: MetricSpec, hours: Sequence[datetime]) -> RunReport:
    """Compute and durably write every hour in ``hours`` that has arrived and is valid."""
    report = RunReport()
    inputs = plan_inputs(data_dir, [as_utc(h) for h in hours], report)
    return run_planned(spark, data_dir, spec, inputs, report)


def run_planned(
    spark: SparkSession, data_dir: Path, spec: MetricSpec, inputs: Sequence[HourInput], report: RunReport
) -> RunReport:
    """Compute and write already planned (and checked) hours into ``report``.

    A file that only fails once its rows are read (a readable footer over broken
    pages) fails its own hour, and the other hours are computed without it. Spark
    names the file; if the name cannot be matched to an hour, the batch is split
    in halves until the failing hour is alone.
    """
    if not inputs:
        return report
    try:
        _run_batch(spark, data_dir, spec, inputs, report)
    except Exception as exc:  # py4j and pyspark raise several types for the same failure
        message = read_failure_message(exc)
        if message is None:
            raise
        failing = [i for i in inputs if any(message.startswith(f"{path}:") for path in i.files)]
        if len(inputs) == 1 or failing:
            bad = failing[0] if failing else inputs[0]
            report.failed[format_hour(bad.hour)] = message
            log.error("hour %s failed: %s", format_hour(bad.hour), message)
            return run_planned(spark, data_dir, spec, [i for i in inputs if i is not bad], report)
        log.warning("%s; computing the batch's hours in smaller batches to isolate it", message)
        middle = len(inputs) // 2
        run_planned(spark, data_dir, spec, inputs[:middle], report)
        run_planned(spark, data_dir, spec, inputs[middle:], report)
    return report


def _run_batch(
    spark: SparkSession, data_dir: Path, spec: MetricSpec, inputs: Sequence[HourInput], report: RunReport
) -> None:
    started = time.monotonic()
    computed = [i.hour for i in inputs]
    # Not cached: caching a million raw rows cost more than reading the files again
    # for the quarantine and the statistics (docs/performance.md). Only the finest
    # slices (a few hundred rows an hour) are kept, for the rollup and the counts.
    classified = with_invalid_reason(read_hours(spark, inputs))
    events = with_hour_placeholders(deduplicate(valid_events(classified)), computed)
    finest = finest_slices(events, spec).persist()
    try:
        checkpoint("job:before-rollup")
        # The first read of every value of every row: a file that cannot be decoded
        # fails here, before anything is written (a failed write commits nothing).
        _overwrite_partitions(rollup_from_finest(finest, spec), data_dir / ROLLUPS_HOURLY)
        checkpoint("job:after-rollup")
        _write_quarantine(spark, data_dir, classified, computed)
        # Statistics are written last: their presence marks the hour's rollup complete.
        rows_read = {i.hour: i.rows for i in inputs}
        stats = hour_stats(_read_quarantine(spark, data_dir, computed), computed, rows_read, counted_events(finest))
        # One small row per hour, plus the input fingerprint taken when the files were listed.
        fingerprints = {f"{i.hour:%Y-%m-%dT%H}": input_fingerprint(list(i.files)) for i in inputs}
        seconds = round(time.monotonic() - started, 3)  # the application's work so far, shared by its hours
        stats_rows = [
            Row(
                **row.asDict(),
                input_fingerprint=fingerprints[f"{row['dt']}T{row['hour']}"],
                duration_seconds=seconds,
            )
            for row in stats.collect()
        ]
        schema = stats.schema.add("input_fingerprint", "string").add("duration_seconds", "double")
        _overwrite_partitions(local_frame(spark, stats_rows, schema), data_dir / ROLLUPS_STATS)
        checkpoint("job:after-stats")
    finally:
        finest.unpersist()
    files_per_hour = {format_hour(i.hour): len(i.files) for i in inputs}
    for row in stats_rows:
        stats_row = row.asDict(recursive=True)
        hour_text = f"{stats_row.pop('dt')}T{stats_row.pop('hour')}:00:00Z"
        stats_row["computed_at"] = stats_row["computed_at"].isoformat()
        stats_row["input_files"] = files_per_hour[hour_text]
        report.computed[hour_text] = stats_row
    report.computed_hours += computed


def _overwrite_partitions(frame: DataFrame, path: Path) -> None:
    # Dynamic partition overwrite (see jobs.session): only these hours are replaced.
    frame.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(path))


def _write_quarantine(spark: SparkSession, data_dir: Path, classified: DataFrame, hours: Sequence[datetime]) -> None:
    # An hour whose rerun has no invalid rows must not keep the old quarantine.
    _delete_paths(spark, [quarantine_hour_dir(data_dir, h) for h in hours])
    invalid = classified.where(F.col(REASON).isNotNull()).select(
        *[c for c in classified.columns if c != HOUR_COLUMN],
        F.date_format(HOUR_COLUMN, "yyyy-MM-dd").alias("dt"),
        F.date_format(HOUR_COLUMN, "HH").alias("hour"),
    )
    invalid.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(data_dir / QUARANTINE))


def _read_quarantine(spark: SparkSession, data_dir: Path, hours: Sequence[datetime]) -> DataFrame:
    """(``_hour``, ``reason``) of the hours' quarantined rows, as just written."""
    folders = [str(folder) for folder in (quarantine_hour_dir(data_dir, h) for h in hours) if folder.is_dir()]
    if not folders:
        schema = T.StructType([T.StructField(HOUR_COLUMN, T.TimestampType()), T.StructField(REASON, T.StringType())])
        return local_frame(spark, [], schema)
    frame = spark.read.option("basePath", str(data_dir / QUARANTINE)).parquet(*folders)
    return frame.select(partition_hour().alias(HOUR_COLUMN), REASON)


def _delete_paths(spark: SparkSession, paths: Sequence[Path]) -> None:
    """Delete folders through Hadoop's FileSystem, so object stores work too."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for path in paths:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(str(path))
        hadoop_path.getFileSystem(conf).delete(hadoop_path, True)


def changed_hours(
    data_dir: Path, hours: Sequence[datetime], built: Mapping[datetime, str | None] | None = None
) -> list[datetime]:
    """Computed hours whose input changed since they were built (late or rewritten files).

    ``built`` (from :func:`tally.layout.built_fingerprints`) saves reading the
    statistics again when the caller already has them.
    """
    built = built_fingerprints(data_dir, hours) if built is None else built
    return [
        hour
        for hour in hours
        if hour in built
        and raw_hour_dir(data_dir, hour).is_dir()
        and built[hour] != input_fingerprint(raw_parquet_files(data_dir, hour))
    ]


def compute_hours(settings: Settings, hours: Sequence[datetime], *, app_name: str = "tally") -> RunReport:
    """Run the job for ``hours`` in one Spark application (the CLI and DAG entry point)."""
    from jobs.session import build_session

    spec = load_spec(settings.spec_path)  # fail on a bad spec before starting Spark
    # Missing folders and broken files are found without Spark; skip its start-up when nothing can run.
    report = RunReport()
    inputs = plan_inputs(settings.data_dir, [as_utc(h) for h in hours], report)
    if not inputs:
        return report
    # A process that already runs a session (an embedding application, the test
    # suite) owns it: use it, and leave it running.
    owned = SparkSession.getActiveSession() is None
    spark = build_session(settings.spark_master, app_name=app_name)
    try:
        return run_planned(spark, settings.data_dir, spec, inputs, report)
    finally:
        if owned:
            spark.stop()


def require_complete(report: RunReport, hours: Sequence[datetime]) -> None:
    """Raise when any of ``hours`` was not computed (missing input or bad file), naming why."""
    wanted = {format_hour(as_utc(h)) for h in hours}
    missing = {h: why for h, why in report.missing.items() if h in wanted}
    failed = {h: why for h, why in report.failed.items() if h in wanted}
    problems = [f"{h}: {why}" for h, why in {**missing, **failed}.items()]
    if failed:
        raise InputError("; ".join(problems))
    if missing:
        raise HourNotArrivedError("; ".join(problems))
