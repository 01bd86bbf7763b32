"""One Spark pass over a batch of hours: every source's rollup, quarantine and statistics.

The hours of a batch share one scan of each source and one aggregation. The
writes come in the order that makes a crash at any point harmless: the rollup,
then each source's quarantine, then the statistics, whose presence marks an
hour complete (the kill points of :mod:`tally.core.faults` sit between them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.inputs import HourPlan
from jobs.source import local_frame, read_hours, union_all
from jobs.tables import overwrite_partitions, read_quarantine, write_quarantine
from jobs.transform import (
    counted_events,
    deduplicate,
    distinct_values,
    finest_slices,
    fold_summary,
    fold_values,
    hour_stats,
    rollup_from_finest,
    valid_events,
    value_ranks,
    with_hour_placeholders,
    with_invalid_reason,
)
from tally.core.faults import checkpoint
from tally.core.layout import (
    ROLLUPS_HOURLY,
    ROLLUPS_STATS,
    format_hour,
    hour_from_partition,
    input_fingerprint,
)
from tally.core.rollup import METRIC, PARTITION_COLUMNS, SKETCH, VALUE
from tally.core.runstats import LOCATION_FIELDS, STORED_TYPES, FoldedDimension, RunStats, combine, source_row
from tally.core.spec import MetricSpec, Source

log = logging.getLogger(__name__)


def stats_schema() -> T.StructType:
    """A statistics row: its partition columns, the transform's counts, then what the job adds.

    Needs a running session (Spark parses the types).
    """
    columns = [*(f"{name} string" for name in LOCATION_FIELDS), *(f"{n} {t}" for n, t in STORED_TYPES.items())]
    schema = T._parse_datatype_string(", ".join(columns))
    assert isinstance(schema, T.StructType)
    return schema


@dataclass
class Laps:
    """Seconds per phase of a batch, as the job spends them (a phase met again adds up)."""

    seconds: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.monotonic)

    def lap(self, phase: str) -> None:
        """Add the time since the previous lap to ``phase``."""
        now = time.monotonic()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in self.seconds.items())


@dataclass
class _SourceRun:
    """One source's frames in a batch."""

    source: Source
    classified: DataFrame
    finest: DataFrame
    rollup_input: DataFrame  # the finest slices after the cardinality guard (``finest`` when nothing folds)
    folds: Mapping[datetime, list[FoldedDimension]] = field(default_factory=dict)


def run_batch(spark: SparkSession, data_dir: Path, spec: MetricSpec, plans: Sequence[HourPlan]) -> dict[str, RunStats]:
    """Compute and write the batch's hours; their statistics, by hour text (:func:`format_hour`).

    A file that cannot be decoded raises before anything is written.
    """
    started = time.monotonic()
    laps = Laps()
    computed = [p.hour for p in plans]
    runs = []
    for source in spec.sources:
        # Not cached: caching a million raw rows cost more than reading the files again
        # for the quarantine and the statistics (docs/performance.md). Only the finest
        # slices (a few hundred rows an hour) are kept, for the rollup and the counts.
        classified = with_invalid_reason(read_hours(spark, source, [p.inputs[source.name] for p in plans]), source)
        valid = deduplicate(valid_events(classified, source, spec), source)
        finest = finest_slices(with_hour_placeholders(valid, computed), spec, source).persist()
        rollup_input, folds = guard_cardinality(spec, source, finest)
        runs.append(_SourceRun(source, classified, finest, rollup_input, folds))
    laps.lap("finest slices")  # the guard's collect computes (and keeps) them: read, de-duplicate, aggregate
    try:
        checkpoint("job:before-rollup")
        # The first read of every value of every row: a file that cannot be decoded
        # fails here, before anything is written (a failed write commits nothing).
        overwrite_partitions(_all_rollups(spec, runs), data_dir / ROLLUPS_HOURLY)
        laps.lap("rollup")
        checkpoint("job:after-rollup")
        stats_rows: list[Row] = []
        for run in runs:
            write_quarantine(spark, data_dir, run.source, run.classified, computed)
            laps.lap("quarantine")
            stats_rows += _source_stats(spark, data_dir, spec, run, plans, started)
            laps.lap("statistics")
        # Statistics are written last: their presence marks the hour's rollup complete.
        schema = stats_schema()
        overwrite_partitions(
            local_frame(spark, [[r[f.name] for f in schema.fields] for r in stats_rows], schema),
            data_dir / ROLLUPS_STATS,
        )
        laps.lap("statistics")
        checkpoint("job:after-stats")
    finally:
        for run in runs:
            run.finest.unpersist()
    log.info("computed %d hour(s) in %.2f s: %s", len(plans), time.monotonic() - started, laps)
    by_hour: dict[str, list[RunStats]] = {}
    files = {(p.hour, name): len(i.files) for p in plans for name, i in p.inputs.items()}
    for row in stats_rows:
        stats_row = source_row(row.asDict(recursive=True))
        hour = hour_from_partition(row["dt"], row["hour"])
        stats_row["input_files"] = files[(hour, row["source"])]
        by_hour.setdefault(format_hour(hour), []).append(stats_row)
    return {hour_text: combine(rows) for hour_text, rows in by_hour.items()}


def guard_cardinality(
    spec: MetricSpec, source: Source, finest: DataFrame
) -> tuple[DataFrame, dict[datetime, list[FoldedDimension]]]:
    """The finest slices to roll up, with each dimension held to its ``max_values`` an hour; the folds, by hour.

    One small aggregation of the (persisted) finest slices counts every dimension's
    values per hour; only a dimension over its limit in some hour is ranked and
    folded, so an ordinary hour costs that one aggregation and nothing more.
    """
    dims = [d for d in source.dimensions if d.name in spec.dimensions_of(source.name)]
    if not dims:
        return finest, {}
    counts = distinct_values(finest, [d.name for d in dims]).collect()
    over = [d for d in dims if any(row[d.name] > d.max_values for row in counts)]
    if not over:
        return finest, {}
    ranks = {d.name: value_ranks(finest, d.name) for d in over}
    folds: dict[datetime, list[FoldedDimension]] = {}
    for dimension in over:
        for row in fold_summary(ranks[dimension.name], dimension.max_values).collect():
            if row["distinct_values"] <= dimension.max_values:
                continue
            fold = FoldedDimension(
                source=source.name,
                dimension=dimension.name,
                distinct_values=int(row["distinct_values"]),
                max_values=dimension.max_values,
                rows_folded=int(row["rows_folded"]),
            )
            hour = hour_from_partition(row["dt"], row["hour"])
            folds.setdefault(hour, []).append(fold)
            log.warning(
                "hour %s: source %r dimension %r has %d distinct values, over its max_values %d: "
                "%d rows of the values beyond the top %d are stored as 'other'",
                format_hour(hour),
                source.name,
                dimension.name,
                fold["distinct_values"],
                dimension.max_values,
                fold["rows_folded"],
                dimension.max_values,
            )
    return fold_values(finest, spec, source, ranks), folds


def _all_rollups(spec: MetricSpec, runs: Sequence[_SourceRun]) -> DataFrame:
    """Every source's rollup rows in one frame, with a column for every dimension of the spec."""
    frames = []
    for run in runs:
        rollup = rollup_from_finest(run.rollup_input, spec, run.source)
        present = set(rollup.columns)
        frames.append(
            rollup.select(
                *PARTITION_COLUMNS,
                METRIC,
                *[(F.col(d) if d in present else F.lit(None)).cast("string").alias(d) for d in spec.dimensions],
                VALUE,
                SKETCH,
            )
        )
    return union_all(frames)


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
    invalid = read_quarantine(spark, data_dir, source, hours)
    stats = hour_stats(invalid, hours, rows_read, counted_events(run.finest), source)
    # The input fingerprint taken when the files were listed, and each metric's definition.
    fingerprints = {p.hour: input_fingerprint(list(p.inputs[source.name].files)) for p in plans}
    definitions = {m.name: spec.fingerprints[m.name] for m in spec.stored_of(source.name)}
    # The application's work so far. Its hours share one scan and one aggregation, so no
    # hour has a time of its own: the figure is the whole application's, with its hour count.
    seconds = round(time.monotonic() - started, 3)
    return [
        Row(
            **row.asDict(),
            input_fingerprint=fingerprints[hour_from_partition(row["dt"], row["hour"])],
            metric_fingerprints=definitions,
            application_seconds=seconds,
            application_hours=len(plans),
            folded_dimensions=list(run.folds.get(hour_from_partition(row["dt"], row["hour"]), [])),
        )
        for row in stats.collect()
    ]
