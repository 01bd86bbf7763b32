"""The hourly job's entry points: plan the hours that can run, compute them, report each hour.

``compute_hours`` is what ``tally run``, ``tally backfill`` and the Airflow DAGs
call (through :mod:`tally.app.pipeline`); ``run_hours`` is the same on a session
the caller owns, and ``tally/app/submit.py`` is it for ``spark-submit``. An hour
runs once every source's folder has arrived and its files pass the footer check
(:mod:`jobs.input_check`); the Spark work is :func:`jobs.batch.run_batch`. The
:class:`RunReport` says which hours were computed, missing or failed, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.batch import run_batch
from jobs.input_check import InputError, inspect_hour, read_failure_message
from jobs.inputs import HourPlan, source_hour_dir
from tally.core.layout import HourNotArrivedError, as_utc, format_hour, parquet_files
from tally.core.runstats import RunStats
from tally.core.settings import Settings
from tally.core.spec import MetricSpec, load_spec

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a run did with each hour it was given, by hour text (:func:`format_hour`)."""

    computed: dict[str, RunStats] = field(default_factory=dict)
    computed_hours: list[datetime] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # hour -> why it has not arrived
    failed: dict[str, str] = field(default_factory=dict)  # hour -> the bad file and why

    @property
    def ok(self) -> bool:
        return not self.failed


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
        report.computed.update(run_batch(spark, data_dir, spec, plans))
        report.computed_hours += [p.hour for p in plans]
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


def compute_hours(settings: Settings, hours: Sequence[datetime], *, app_name: str = "tally") -> RunReport:
    """Run the job for ``hours`` in one Spark application (the CLI and DAG entry point)."""
    from jobs.session import active_session, build_session

    spec = load_spec(settings.spec_path)  # fail on a bad spec before starting Spark
    # Missing folders and broken files are found without Spark; skip its start-up when nothing can run.
    report = RunReport()
    plans = plan_inputs(settings.data_dir, spec, [as_utc(h) for h in hours], report)
    if not plans:
        return report
    # A process that already runs a session (an embedding application, the test
    # suite) owns it: use it, and leave it running. With SPARK_REMOTE the session is
    # on a warm Spark Connect server; stopping ours only releases it there.
    owned = active_session(settings.spark_remote) is None
    spark = build_session(settings.spark_master, app_name=app_name, remote=settings.spark_remote)
    engine = f"the Spark Connect server at {settings.spark_remote}" if settings.spark_remote else "in-process Spark"
    log.info("computing %d hour(s) on %s", len(plans), engine)
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
