"""Pure DataFrame -> DataFrame steps of the hourly job. No I/O here.

Pipeline: ``with_invalid_reason`` -> ``valid_events`` -> ``deduplicate`` ->
``with_hour_placeholders`` -> ``finest_slices`` -> (``fold_values``, the
cardinality guard, where a dimension has too many values) -> ``rollup_from_finest``
(``aggregate`` is ``finest_slices`` and ``rollup_from_finest``); ``hour_stats``
summarises the classified input for the run statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.partitions import partition_columns
from jobs.source import HOUR_COLUMN, local_frame, union_all
from tally.core.rollup import METRIC, SKETCH, VALUE, VALUE_TYPES
from tally.core.spec import UNKNOWN, Dimension, Kind, Merge, Metric, MetricSpec, Source, quote_column
from tally.core.spec_model import OTHER

REASON = "reason"
REAL = "_real"
COUNTED = "_counted"
VALUE_PREFIX = "_v_"
MATCH_PREFIX = "_m_"
# A value's counted rows in an hour and its place among the hour's values (the cardinality guard).
VALUE_ROWS = "_g_rows"
VALUE_RANK = "_g_rank"
# Epoch numbers beyond year 9999 are not times (and would overflow Spark's conversion).
_MAX_EPOCH_SECONDS = 253_402_300_799
_EPOCH = {"s": (F.timestamp_seconds, 1), "ms": (F.timestamp_millis, 1_000), "us": (F.timestamp_micros, 1_000_000)}


def column(name: str) -> Column:
    """A declared column, whatever characters its name has."""
    return F.col(quote_column(name))


def sql(text: str, source: Source) -> Column:
    """A spec expression: a declared column by name, else Spark SQL over the source's columns."""
    return column(text) if text in source.column_types else F.expr(text)


def event_time(source: Source) -> Column:
    """The source's time column as a timestamp (epoch numbers converted; absurd ones null)."""
    time = column(source.time.column)
    if source.time.unit is None:
        return time
    convert, per_second = _EPOCH[source.time.unit]
    bound = _MAX_EPOCH_SECONDS * per_second
    return F.when(time.between(-bound, bound), convert(time))


def dimension_value(dimension: Dimension) -> Column:
    """A dimension's value: text, with null named ``unknown``."""
    return F.coalesce(F.expr(dimension.sql).cast("string"), F.lit(UNKNOWN))


def with_invalid_reason(events: DataFrame, source: Source) -> DataFrame:
    """Add ``reason``: why a row is invalid (the first rule it breaks, in the spec's order), or null.

    Each ``required`` column in order (null, or empty text), then the time column
    (null, or outside the folder's hour), then each rule (a condition valid rows
    satisfy: false or null is invalid).
    """
    types = source.column_types
    hour = F.col(HOUR_COLUMN)
    rules: list[tuple[Column, str]] = []
    for name in source.required:
        blank = column(name).isNull()
        if types[name] == "string":
            blank = blank | (column(name) == "")
        rules.append((blank, f"missing_{name}"))
    time = event_time(source)
    outside_hour = time.isNull() | (time < hour) | (time >= hour + F.expr("INTERVAL 1 HOUR"))
    rules.append((column(source.time.column).isNull(), f"missing_{source.time.column}"))
    rules.append((outside_hour, f"{source.time.column}_outside_hour"))
    rules += [(~F.coalesce(F.expr(condition), F.lit(False)), reason) for reason, condition in source.rules]
    reason = reduce(
        lambda acc, rule: acc.when(rule[0], F.lit(rule[1])), rules[1:], F.when(rules[0][0], F.lit(rules[0][1]))
    )
    return events.select("*", reason.alias(REASON))


def _matches(metric: Metric, source: Source) -> Column:
    """Whether a row counts for the metric: its filter (on dimension values or raw columns) and ``where``."""
    condition = F.lit(True)
    for key, values in metric.filter:
        dimension = source.dimension(key)
        value = dimension_value(dimension) if dimension is not None else column(key)
        condition = condition & value.isin(*values)
    if metric.where is not None:
        condition = condition & F.expr(metric.where)
    return condition


def _field_value(metric: Metric, source: Source) -> Column | None:
    """The value a row gives the metric when it matches (none for a count), before the match is applied."""
    if metric.kind is Kind.COUNT:
        return None
    if metric.kind is Kind.COUNT_DISTINCT:
        # Sketches take text, integers or bytes: text keeps any field type countable.
        return sql(metric.field or "", source).cast("string")
    if metric.kind in (Kind.SUM, Kind.MIN, Kind.MAX, Kind.QUANTILE):
        return sql(metric.field or "", source).cast("double")
    raise ValueError(f"{metric.name}: ratios are computed at read time")


def _input_of(metric: Metric, matches: Column, value: Column | None) -> Column:
    """What a row gives the metric: whether it counts, the number it adds, or the value it counts once."""
    if metric.kind is Kind.COUNT:
        return F.coalesce(matches, F.lit(False))
    assert value is not None, metric.name
    if metric.kind in (Kind.MIN, Kind.MAX, Kind.QUANTILE):
        # NaN is no value: it would be every maximum (Spark orders it last) and no rank.
        return F.when(matches & ~F.isnan(value), value)
    return F.when(matches, value)


def _value_columns(metrics: Sequence[Metric], source: Source) -> dict[str, str]:
    """Each metric's value column (``_v_<i>``), shared by the metrics whose field expression is the same."""
    names: dict[tuple[str, bool], str] = {}
    of_metric: dict[str, str] = {}
    for metric in metrics:
        if metric.kind is not Kind.COUNT:
            # The same field gives the same value, as text for a sketch and as a number otherwise.
            key = (metric.field or "", metric.kind is Kind.COUNT_DISTINCT)
            of_metric[metric.name] = names.setdefault(key, f"{VALUE_PREFIX}{len(names)}")
    return of_metric


def valid_events(classified: DataFrame, source: Source, spec: MetricSpec) -> DataFrame:
    """Valid rows as the aggregation needs them: hour, id, time, dimension values, what the metrics read.

    Expressions see the source's columns as declared; only what the metrics need
    travels on (through the de-duplication's shuffle): one column per distinct field
    value (seven metrics over ``user_id`` share one) and one match flag per metric
    (``_m_<metric>``); :func:`finest_slices` combines them into each metric's input.
    """
    keep = [source.id] if source.id is not None else []
    dimensions = [d for d in source.dimensions if d.name in spec.dimensions_of(source.name)]
    stored = spec.stored_of(source.name)
    names = _value_columns(stored, source)
    values = {names[m.name]: _field_value(m, source) for m in stored if m.name in names}
    return classified.where(F.col(REASON).isNull()).select(
        HOUR_COLUMN,
        *[column(c) for c in keep],
        column(source.time.column),
        *[dimension_value(d).alias(d.name) for d in dimensions],
        *[value.alias(name) for name, value in values.items() if value is not None],
        *[_matches(m, source).alias(MATCH_PREFIX + m.name) for m in stored],
    )


def deduplicate(valid: DataFrame, source: Source) -> DataFrame:
    """One row per (hour, id): at-least-once delivery counts once. A source without ``id`` keeps every row.

    When copies differ, the smallest row (by time, then the other columns, nulls
    first) wins, so reruns are deterministic whatever order files are read in. A
    window keeps the first row of each id in one shuffle and one sort; the
    equivalent ``min(struct(...))`` aggregation sorted twice and was 25% slower.
    The id leads the window's key: Spark sorts on a prefix of the first key, and
    the hour is the same for every row of an hour.
    """
    if source.id is None:
        return valid
    payload = [column(c) for c in valid.columns if c not in (HOUR_COLUMN, source.id)]
    first = Window.partitionBy(column(source.id), HOUR_COLUMN).orderBy(*payload)
    return valid.select("*", F.row_number().over(first).alias("_copy")).where(F.col("_copy") == 1).drop("_copy")


def with_hour_placeholders(events: DataFrame, hours: Sequence[datetime]) -> DataFrame:
    """Add one placeholder row per hour so a quiet hour still yields zero totals.

    Placeholders have ``_real`` false and null dimensions; ``aggregate`` counts
    only real rows and drops the placeholder's own slices.
    """
    spark: SparkSession = events.sparkSession
    schema = T.StructType([T.StructField(HOUR_COLUMN, T.TimestampType(), False)])
    placeholders = local_frame(spark, [(h,) for h in hours], schema)
    real = events.select("*", F.lit(True).alias(REAL))
    return real.unionByName(placeholders.select("*", F.lit(False).alias(REAL)), allowMissingColumns=True)


def _row_column(metric: Metric, lg_k: int, value: Column) -> Column:
    """The metric over the rows of one finest slice (``value``: its input): a count, a sum, an extreme or a sketch."""
    merge = metric.merge
    if metric.kind is Kind.COUNT:
        result = F.count(F.when(F.col(REAL) & value, F.lit(1)))
    elif merge is Merge.SUM:
        result = F.sum(value)  # null on placeholders and rows that do not match
    elif merge is Merge.MIN:
        result = F.min(value)  # null where no row matches: there is no minimum of nothing
    elif merge is Merge.MAX:
        result = F.max(value)
    elif merge is Merge.HLL:
        result = F.hll_sketch_agg(value, lg_k)
    elif merge is Merge.THETA:
        result = F.theta_sketch_agg(value, metric.lg_nom_entries)
    else:
        result = F.kll_sketch_agg_double(value, metric.kll_k)
    return result.alias(metric.name)


def _merged(metric: Metric, column: Column) -> Column:
    """The aggregate that combines a column of the metric's figures: add, min, max or sketch union."""
    merge = metric.merge
    if merge is Merge.MIN:
        return F.min(column)
    if merge is Merge.MAX:
        return F.max(column)
    if merge is Merge.HLL:
        return F.hll_union_agg(column)
    if merge is Merge.THETA:
        return F.theta_union_agg(column, metric.lg_nom_entries)
    if merge is Merge.KLL:
        return F.kll_merge_agg_double(column, metric.kll_k)
    return F.sum(column)


def _slice_column(metric: Metric) -> Column:
    """The metric of a coarser slice from its finest slices: counts and sums add (0 when empty), the rest merge."""
    merged = _merged(metric, F.col(metric.name))
    if metric.merge is Merge.SUM:
        merged = F.coalesce(merged, F.lit(0)).cast("double")
    return merged.alias(metric.name)


def _by_stored_sets(metrics: Sequence[Metric]) -> list[tuple[list[tuple[str, ...]], list[Metric]]]:
    """The metrics grouped by the dimension sets they store (each group's sets, in slice order).

    Each group is rolled up on its own: a metric is merged only over its own sets.
    One aggregation over the union of every metric's sets merged each theta and KLL
    sketch (up to 32 KB) over every set, most of them dropped afterwards.
    """
    groups: dict[frozenset[tuple[str, ...]], list[Metric]] = {}
    for metric in metrics:
        groups.setdefault(frozenset(tuple(sorted(s)) for s in metric.slice_dimension_sets()), []).append(metric)
    return [(sorted(sets, key=lambda s: (len(s), s)), group) for sets, group in groups.items()]


def finest_slices(events: DataFrame, spec: MetricSpec, source: Source) -> DataFrame:
    """Every stored metric per hour and finest slice (every dimension split), plus ``_counted``.

    This is the only step that reads rows; an hour has a few hundred finest slices,
    from which :func:`rollup_from_finest` sums or unions every coarser one. Grouping
    the rows by every slice set directly multiplies them by the number of sets and,
    with HLL sketches, pushes Spark into sort-based aggregation: 20x slower on 1M rows.
    """
    dims = list(spec.dimensions_of(source.name))
    counted = F.count(F.when(F.col(REAL), F.lit(1))).alias(COUNTED)
    stored = spec.stored_of(source.name)
    values = _value_columns(stored, source)

    def metric_value(metric: Metric) -> Column:
        value = F.col(values[metric.name]) if metric.name in values else None
        return _input_of(metric, F.col(MATCH_PREFIX + metric.name), value)

    metrics = [_row_column(m, spec.sketch_lg_k, metric_value(m)) for m in stored]
    return events.groupBy(HOUR_COLUMN, *dims).agg(*metrics, counted)


def distinct_values(finest: DataFrame, dimensions: Sequence[str]) -> DataFrame:
    """Per hour of :func:`finest_slices`: how many values each of ``dimensions`` takes (a column each).

    The cardinality guard's cheap check: only a dimension over its ``max_values``
    in some hour needs :func:`value_ranks` and :func:`fold_values`.
    """
    return finest.groupBy(HOUR_COLUMN).agg(*[F.count_distinct(d).alias(d) for d in dimensions])


def value_ranks(finest: DataFrame, dimension: str) -> DataFrame:
    """Per hour, each value of ``dimension``: its counted rows and its rank (1 has the most rows).

    Ties are broken by the value, so a rerun keeps the same values. Placeholder
    rows (null dimensions, no counted rows) are no value.
    """
    by_rows = Window.partitionBy(HOUR_COLUMN).orderBy(F.col(VALUE_ROWS).desc(), F.col(dimension))
    counts = (
        finest.where(F.col(dimension).isNotNull())
        .groupBy(HOUR_COLUMN, dimension)
        .agg(F.sum(COUNTED).cast("long").alias(VALUE_ROWS))
    )
    return counts.select(HOUR_COLUMN, dimension, VALUE_ROWS, F.row_number().over(by_rows).alias(VALUE_RANK))


def fold_summary(ranks: DataFrame, max_values: int) -> DataFrame:
    """Per hour (``dt``, ``hour``) of :func:`value_ranks`: ``distinct_values`` and ``rows_folded``.

    The folded rows are those of the values ranked beyond ``max_values``.
    """
    beyond = F.col(VALUE_RANK) > max_values
    summary = ranks.groupBy(HOUR_COLUMN).agg(
        F.count(F.lit(1)).cast("long").alias("distinct_values"),
        F.coalesce(F.sum(F.when(beyond, F.col(VALUE_ROWS))), F.lit(0)).cast("long").alias("rows_folded"),
    )
    return summary.select(*partition_columns(HOUR_COLUMN), "distinct_values", "rows_folded")


def fold_values(finest: DataFrame, spec: MetricSpec, source: Source, ranks: Mapping[str, DataFrame]) -> DataFrame:
    """:func:`finest_slices` with each value ranked beyond its dimension's ``max_values`` stored as ``other``.

    ``ranks`` holds :func:`value_ranks` of the dimensions to guard. The slices that
    become one are added up again (counts and sums add, sketches union), so every
    total is unchanged; metric filters were applied to the raw rows before.
    """
    folded = finest
    for name, ranked in ranks.items():
        dimension = source.dimension(name)
        assert dimension is not None, name
        beyond = ranked.where(F.col(VALUE_RANK) > dimension.max_values).select(
            HOUR_COLUMN, name, F.lit(True).alias("_g_beyond")
        )
        value = F.when(F.col("_g_beyond"), F.lit(OTHER)).otherwise(F.col(name)).alias(name)
        folded = folded.join(beyond, on=[HOUR_COLUMN, name], how="left").select(
            *[value if c == name else F.col(c) for c in finest.columns]
        )
    dims = list(spec.dimensions_of(source.name))
    metrics = [_refold_column(m) for m in spec.stored_of(source.name)]
    return folded.groupBy(HOUR_COLUMN, *dims).agg(*metrics, F.sum(COUNTED).cast("long").alias(COUNTED))


def _refold_column(metric: Metric) -> Column:
    """The metric of finest slices made one: counts and sums add (a sum of nulls stays null), the rest merge."""
    return _merged(metric, F.col(metric.name)).alias(metric.name)


def counted_events(finest: DataFrame) -> DataFrame:
    """Per hour: the de-duplicated valid events (``_hour``, ``counted_events``)."""
    return finest.groupBy(HOUR_COLUMN).agg(F.sum(COUNTED).alias("counted_events"))


def aggregate(events: DataFrame, spec: MetricSpec, source: Source) -> DataFrame:
    """Every stored metric of ``source`` for every slice of every hour of ``events``; see :func:`rollup_from_finest`."""
    return rollup_from_finest(finest_slices(events, spec, source), spec, source)


def rollup_from_finest(finest: DataFrame, spec: MetricSpec, source: Source) -> DataFrame:
    """Every stored metric of ``source`` for every slice of every hour, from :func:`finest_slices`.

    Output (long): ``dt``, ``hour``, ``metric``, one column per dimension (null
    where the slice does not split by it), ``value`` (count, sum, extreme, distinct
    estimate, or a quantile sketch's number of values) and ``sketch`` (HLL, theta
    or KLL bytes, else null). Rows of a non-total slice whose value is 0 are
    dropped: absent means zero (nothing happened). A min or max keeps its zeros and
    drops its nulls, the total's too: absent there means no value.
    """
    dims = list(spec.dimensions_of(source.name))
    stored = spec.stored_of(source.name)
    if not stored:
        schema = ", ".join(["dt string", "hour string", "metric string", *[f"`{d}` string" for d in dims]])
        return finest.sparkSession.createDataFrame([], f"{schema}, value double, sketch binary")
    # A grouped dimension can only be null on a placeholder row: drop those slices.
    placeholder_slice = reduce(lambda acc, d: acc | ((F.col(f"_g_{d}") == 0) & F.col(d).isNull()), dims, F.lit(False))
    flags = [F.grouping(d).alias(f"_g_{d}") for d in dims]
    parts = []
    for sets, metrics in _by_stored_sets(stored):
        grouped = [[HOUR_COLUMN, *s] for s in sets]
        wide = finest.groupingSets(grouped, HOUR_COLUMN, *dims).agg(*[_slice_column(m) for m in metrics], *flags)
        entries = F.array(*[_metric_entry(m) for m in metrics])
        parts.append(wide.where(~placeholder_slice).select(HOUR_COLUMN, *dims, F.explode(entries).alias("entry")))
    long = union_all(parts)
    is_total = reduce(lambda acc, d: acc & F.col(d).isNull(), dims, F.lit(True))
    absent_when_zero = F.col("entry._zero_absent")
    kept = F.col(f"entry.{VALUE}").isNotNull() & (is_total | ~absent_when_zero | (F.col(f"entry.{VALUE}") != 0))
    return long.where(kept).select(
        *partition_columns(HOUR_COLUMN),
        F.col(f"entry.{METRIC}").alias(METRIC),
        *[F.col(d).cast("string").alias(d) for d in dims],
        F.col(f"entry.{VALUE}").cast(VALUE_TYPES[VALUE]).alias(VALUE),
        F.col(f"entry.{SKETCH}").cast(VALUE_TYPES[SKETCH]).alias(SKETCH),
    )


def _metric_entry(metric: Metric) -> Column:
    """The metric's (name, value, sketch) in a slice of its group's sets (:func:`_by_stored_sets`): all its own."""
    aggregate_value = F.col(metric.name)
    merge = metric.merge
    value, sketch = aggregate_value.cast("double"), F.lit(None).cast("binary")
    if merge is Merge.HLL:
        value, sketch = F.hll_sketch_estimate(aggregate_value).cast("double"), aggregate_value
    elif merge is Merge.THETA:
        value, sketch = F.theta_sketch_estimate(aggregate_value).cast("double"), aggregate_value
    elif merge is Merge.KLL:
        # A quantile's value is how many numbers its sketch holds: 0 exactly when there are none.
        value, sketch = F.kll_sketch_get_n_double(aggregate_value).cast("double"), aggregate_value
    zero_absent = F.lit(merge not in (Merge.MIN, Merge.MAX))
    entry = F.struct(
        F.lit(metric.name).alias(METRIC), value.alias(VALUE), sketch.alias(SKETCH), zero_absent.alias("_zero_absent")
    )
    return entry


def hour_stats(
    invalid: DataFrame,
    hours: Sequence[datetime],
    rows_read: Mapping[datetime, int],
    counted: DataFrame,
    source: Source,
) -> DataFrame:
    """Per hour: rows read, valid, invalid (and by reason), duplicates, counted events.

    No scan of the input: ``rows_read`` comes from the files' footers, ``invalid``
    (``_hour``, ``reason``) is the quarantine just written (a small share of the
    rows), and ``counted`` (from :func:`counted_events`) from the rollup's own
    pass. Every hour in ``hours`` gets a row, zeros included (a quiet hour), with
    a count for each of the source's reasons.
    """
    reasons = invalid.groupBy(HOUR_COLUMN).agg(
        F.count(F.lit(1)).alias("invalid_rows"),
        *[F.count(F.when(F.col(REASON) == r, 1)).alias(f"_reason_{r}") for r in source.reasons],
    )
    spark = invalid.sparkSession
    schema = T.StructType(
        [T.StructField(HOUR_COLUMN, T.TimestampType(), False), T.StructField("rows_read", T.LongType(), False)]
    )
    all_hours = local_frame(spark, [(h, rows_read.get(h, 0)) for h in hours], schema)
    joined = all_hours.join(reasons, on=HOUR_COLUMN, how="left").join(counted, on=HOUR_COLUMN, how="left")

    def number(name: str) -> Column:
        return F.coalesce(F.col(name), F.lit(0)).cast("long")

    by_reason = F.create_map(*[x for r in source.reasons for x in (F.lit(r), number(f"_reason_{r}"))])
    valid_rows = number("rows_read") - number("invalid_rows")
    return joined.select(
        *partition_columns(HOUR_COLUMN),
        number("rows_read").alias("rows_read"),
        valid_rows.alias("valid_rows"),
        number("invalid_rows").alias("invalid_rows"),
        (valid_rows - number("counted_events")).alias("duplicate_rows"),
        number("counted_events").alias("counted_events"),
        by_reason.alias("invalid_by_reason"),
        F.current_timestamp().alias("computed_at"),
        F.lit(source.name).alias("source"),
    )
