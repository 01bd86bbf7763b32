"""The hourly job's entry point: read hours, write rollups, quarantine and statistics.

This is the only module of ``jobs`` that does I/O. ``run_hours`` is what
``tally run``, ``tally backfill`` and the Airflow DAGs call; ``tally/app/submit.py`` is
the same thing for ``spark-submit``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from tally.core.faults import checkpoint
from tally.core.layout import (
    ROLLUPS_HOURLY,
    ROLLUPS_STATS,
    HourNotArrivedError,
    as_utc,
    combined_fingerprint,
    format_hour,
    hour_folder,
    input_fingerprint,
    parquet_files,
    quarantine_dir,
    quarantine_hour_dir,
)
from tally.core.runstats import built_fingerprints, combine, source_row
from tally.core.settings import Settings
from tally.core.spec import MetricSpec, Source, load_spec

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    computed: dict[str, dict[str, Any]] = field(default_factory=dict)
    computed_hours: list[datetime] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class HourPlan:
    """An hour that can run: every source's checked input files."""

    hour: datetime
    inputs: dict[str, HourInput]  # source name -> its files of the hour

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for hour_input in self.inputs.values() for path in hour_input.files)


def source_hour_dir(data_dir: Path, source: Source, hour: datetime) -> Path:
    return hour_folder(data_dir, source.path, hour)


def plan_inputs(data_dir: Path, spec: MetricSpec, hours: Sequence[datetime], report: RunReport) -> list[HourPlan]:
    """The hours that can run; missing and broken ones are recorded (and logged) in ``report``.

    An hour runs once the folder of every source has arrived.
    """
    plans = []
    for hour in hours:
        text = format_hour(hour)
        absent = [(s, source_hour_dir(data_dir, s, hour)) for s in spec.sources]
        absent = [(s, folder) for s, folder in absent if not folder.is_dir()]
        if absent:
            report.missing[text] = "; ".join(
                f"source {s.name!r}: input folder {folder} does not exist (hour not arrived)" for s, folder in absent
            )
            log.warning("hour %s skipped: %s", text, report.missing[text])
            continue
        try:
            inputs = {
                s.name: inspect_hour(s, hour, parquet_files(source_hour_dir(data_dir, s, hour))) for s in spec.sources
            }
        except InputError as exc:
            report.failed[text] = str(exc)
            log.error("hour %s failed: %s", text, exc)
            continue
        plans.append(HourPlan(hour, inputs))
    return plans


def run_hours(spark: SparkSession, data_dir: Path, spec: MetricSpec, hours: Sequence[datetime]) -> RunReport:
    """Compute and durably write every hour in ``hours`` that has arrived and is valid."""
    report = RunReport()
    plans = plan_inputs(data_dir, spec, [as_utc(h) for h in hours], report)
    return run_planned(spark, data_dir, spec, plans, report)


def run_planned(
    spark: SparkSession, data_dir: Path, spec: MetricSpec, plans: Sequence[HourPlan], report: RunReport
) -> RunReport:
    """Compute and write already planned (and checked) hours into ``report``.

    A file that only fails once its rows are read (a readable footer over broken
    pages) fails its own hour, and the other hours are computed without it. Spark
    names the file; if the name cannot be matched to an hour, the batch is split
    in halves until the failing hour is alone.
    """
    if not plans:
        return report
    try:
        _run_batch(spark, data_dir, spec, plans, report)
    except Exception as exc:  # py4j and pyspark raise several types for the same failure
        message = read_failure_message(exc)
        if message is None:
            raise
        failing = [p for p in plans if any(message.startswith(f"{path}:") for path in p.files)]
        if len(plans) == 1 or failing:
            bad = failing[0] if failing else plans[0]
            report.failed[format_hour(bad.hour)] = message
            log.error("hour %s failed: %s", format_hour(bad.hour), message)
            return run_planned(spark, data_dir, spec, [p for p in plans if p is not bad], report)
        log.warning("%s; computing the batch's hours in smaller batches to isolate it", message)
        middle = len(plans) // 2
        run_planned(spark, data_dir, spec, plans[:middle], report)
        run_planned(spark, data_dir, spec, plans[middle:], report)
    return report


@dataclass
class _SourceRun:
    """One source's frames in a batch."""

    source: Source
    classified: DataFrame
    finest: DataFrame


def _run_batch(
    spark: SparkSession, data_dir: Path, spec: MetricSpec, plans: Sequence[HourPlan], report: RunReport
) -> None:
    started = time.monotonic()
    computed = [p.hour for p in plans]
    runs = []
    for source in spec.sources:
        # Not cached: caching a million raw rows cost more than reading the files again
        # for the quarantine and the statistics (docs/performance.md). Only the finest
        # slices (a few hundred rows an hour) are kept, for the rollup and the counts.
        classified = with_invalid_reason(read_hours(spark, source, [p.inputs[source.name] for p in plans]), source)
        valid = deduplicate(valid_events(classified, source, spec), source)
        finest = finest_slices(with_hour_placeholders(valid, computed), spec, source).persist()
        runs.append(_SourceRun(source, classified, finest))
    try:
        checkpoint("job:before-rollup")
        # The first read of every value of every row: a file that cannot be decoded
        # fails here, before anything is written (a failed write commits nothing).
        _overwrite_partitions(_all_rollups(spec, runs), data_dir / ROLLUPS_HOURLY)
        checkpoint("job:after-rollup")
        stats_rows: list[Row] = []
        for run in runs:
            _write_quarantine(spark, data_dir, run.source, run.classified, computed)
            stats_rows += _source_stats(spark, data_dir, spec, run, plans, started)
        # Statistics are written last: their presence marks the hour's rollup complete.
        schema = _STATS_SCHEMA
        _overwrite_partitions(
            local_frame(spark, [[r[f.name] for f in schema.fields] for r in stats_rows], schema),
            data_dir / ROLLUPS_STATS,
        )
        checkpoint("job:after-stats")
    finally:
        for run in runs:
            run.finest.unpersist()
    by_hour: dict[str, list[dict[str, Any]]] = {}
    files = {(p.hour, name): len(i.files) for p in plans for name, i in p.inputs.items()}
    for row in stats_rows:
        stats_row = source_row(row.asDict(recursive=True))
        hour = datetime.strptime(f"{row['dt']}T{row['hour']}", "%Y-%m-%dT%H").replace(tzinfo=UTC)
        stats_row["input_files"] = files[(hour, row["source"])]
        by_hour.setdefault(format_hour(hour), []).append(stats_row)
    for hour_text, rows in by_hour.items():
        report.computed[hour_text] = combine(rows)
    report.computed_hours += computed


# One row per source and hour: the transform's counts, then what the job adds.
_STATS_SCHEMA = T.StructType(
    [
        T.StructField("dt", T.StringType()),
        T.StructField("hour", T.StringType()),
        T.StructField("rows_read", T.LongType()),
        T.StructField("valid_rows", T.LongType()),
        T.StructField("invalid_rows", T.LongType()),
        T.StructField("duplicate_rows", T.LongType()),
        T.StructField("counted_events", T.LongType()),
        T.StructField("invalid_by_reason", T.MapType(T.StringType(), T.LongType())),
        T.StructField("computed_at", T.TimestampType()),
        T.StructField("source", T.StringType()),
        T.StructField("input_fingerprint", T.StringType()),
        T.StructField("metric_fingerprints", T.MapType(T.StringType(), T.StringType())),
        T.StructField("application_seconds", T.DoubleType()),
        T.StructField("application_hours", T.LongType()),
    ]
)


def _all_rollups(spec: MetricSpec, runs: Sequence[_SourceRun]) -> DataFrame:
    """Every source's rollup rows in one frame, with a column for every dimension of the spec."""
    frames = []
    for run in runs:
        rollup = rollup_from_finest(run.finest, spec, run.source)
        present = set(rollup.columns)
        frames.append(
            rollup.select(
                "dt",
                "hour",
                "metric",
                *[(F.col(d) if d in present else F.lit(None)).cast("string").alias(d) for d in spec.dimensions],
                "value",
                "sketch",
            )
        )
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _source_stats(
    spark: SparkSession,
    data_dir: Path,
    spec: MetricSpec,
    run: _SourceRun,
    plans: Sequence[HourPlan],
    started: float,
) -> list[Row]:
    """The source's statistics rows of the batch's hours, with fingerprints and the duration so far."""
    hours = [p.hour for p in plans]
    source = run.source
    rows_read = {p.hour: p.inputs[source.name].rows for p in plans}
    invalid = _read_quarantine(spark, data_dir, source, hours)
    stats = hour_stats(invalid, hours, rows_read, counted_events(run.finest), source)
    # The input fingerprint taken when the files were listed, and each metric's definition.
    fingerprints = {f"{p.hour:%Y-%m-%dT%H}": input_fingerprint(list(p.inputs[source.name].files)) for p in plans}
    definitions = {m.name: spec.fingerprints[m.name] for m in spec.stored_of(source.name)}
    # The application's work so far. Its hours share one scan and one aggregation, so no
    # hour has a time of its own: the figure is the whole application's, with its hour count.
    seconds = round(time.monotonic() - started, 3)
    return [
        Row(
            **row.asDict(),
            input_fingerprint=fingerprints[f"{row['dt']}T{row['hour']}"],
            metric_fingerprints=definitions,
            application_seconds=seconds,
            application_hours=len(plans),
        )
        for row in stats.collect()
    ]


def _overwrite_partitions(frame: DataFrame, path: Path) -> None:
    # Dynamic partition overwrite (see jobs.session): only these hours are replaced.
    frame.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(path))


def _write_quarantine(
    spark: SparkSession, data_dir: Path, source: Source, classified: DataFrame, hours: Sequence[datetime]
) -> None:
    # An hour whose rerun has no invalid rows must not keep the old quarantine.
    _delete_paths(spark, [quarantine_hour_dir(data_dir, h, source.name) for h in hours])
    invalid = classified.where(F.col(REASON).isNotNull()).select(
        *[c for c in classified.columns if c != HOUR_COLUMN],
        F.date_format(HOUR_COLUMN, "yyyy-MM-dd").alias("dt"),
        F.date_format(HOUR_COLUMN, "HH").alias("hour"),
    )
    invalid.write.mode("overwrite").partitionBy("dt", "hour").parquet(str(quarantine_dir(data_dir, source.name)))


def _read_quarantine(spark: SparkSession, data_dir: Path, source: Source, hours: Sequence[datetime]) -> DataFrame:
    """(``_hour``, ``reason``) of the source's quarantined rows of ``hours``, as just written."""
    folders = [quarantine_hour_dir(data_dir, h, source.name) for h in hours]
    folders = [str(folder) for folder in folders if folder.is_dir()]
    if not folders:
        schema = T.StructType([T.StructField(HOUR_COLUMN, T.TimestampType()), T.StructField(REASON, T.StringType())])
        return local_frame(spark, [], schema)
    frame = spark.read.option("basePath", str(quarantine_dir(data_dir, source.name))).parquet(*folders)
    return frame.select(partition_hour().alias(HOUR_COLUMN), REASON)


def _delete_paths(spark: SparkSession, paths: Sequence[Path]) -> None:
    """Delete folders through Hadoop's FileSystem, so object stores work too."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for path in paths:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(str(path))
        hadoop_path.getFileSystem(conf).delete(hadoop_path, True)


def source_fingerprints(data_dir: Path, spec: MetricSpec, hour: datetime) -> dict[str, str] | None:
    """Each source's input fingerprint of the hour, None while a source's folder is missing."""
    per_source = {}
    for source in spec.sources:
        folder = source_hour_dir(data_dir, source, hour)
        if not folder.is_dir():
            return None
        per_source[source.name] = input_fingerprint(parquet_files(folder))
    return per_source


def hour_input_fingerprint(data_dir: Path, spec: MetricSpec, hour: datetime) -> str | None:
    """The fingerprint of the hour's input over every source, None while a source's folder is missing."""
    per_source = source_fingerprints(data_dir, spec, hour)
    return None if per_source is None else combined_fingerprint(per_source)


def changed_hours(
    data_dir: Path,
    spec: MetricSpec,
    hours: Sequence[datetime],
    built: Mapping[datetime, str | None] | None = None,
) -> list[datetime]:
    """Computed hours whose input changed since they were built (late or rewritten files, in any source).

    ``built`` (from :func:`tally.core.runstats.built_fingerprints`) saves reading the
    statistics again when the caller already has them.
    """
    built = built_fingerprints(data_dir, hours) if built is None else built
    changed = []
    for hour in hours:
        if hour not in built:
            continue
        now = hour_input_fingerprint(data_dir, spec, hour)
        if now is not None and built[hour] != now:
            changed.append(hour)
    return changed


def compute_hours(settings: Settings, hours: Sequence[datetime], *, app_name: str = "tally") -> RunReport:
    """Run the job for ``hours`` in one Spark application (the CLI and DAG entry point)."""
    from jobs.session import build_session

    spec = load_spec(settings.spec_path)  # fail on a bad spec before starting Spark
    # Missing folders and broken files are found without Spark; skip its start-up when nothing can run.
    report = RunReport()
    plans = plan_inputs(settings.data_dir, spec, [as_utc(h) for h in hours], report)
    if not plans:
        return report
    # A process that already runs a session (an embedding application, the test
    # suite) owns it: use it, and leave it running.
    owned = SparkSession.getActiveSession() is None
    spark = build_session(settings.spark_master, app_name=app_name)
    try:
        from jobs.spec_check import require_valid_sql

        require_valid_sql(spark, spec, settings.spec_path)  # before reading any data
        return run_planned(spark, settings.data_dir, spec, plans, report)
    finally:
        if owned:
            spark.stop()


def require_some_arrived(report: RunReport, hours: Sequence[datetime]) -> None:
    """Raise when not one of ``hours`` has arrived: a recompute of nothing is a mistake (a wrong
    range or data dir), not a success. Names the first folders looked for."""
    if not hours or report.computed_hours or report.failed or len(report.missing) < len(hours):
        return
    shown = [f"{hour}: {why}" for hour, why in list(report.missing.items())[:3]]
    more = len(report.missing) - len(shown)
    raise HourNotArrivedError(
        f"none of the {len(hours)} hour(s) from {format_hour(as_utc(hours[0]))} to {format_hour(as_utc(hours[-1]))} "
        "has arrived, so nothing was computed: " + "; ".join(shown) + (f"; and {more} more" if more else "")
    )


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
