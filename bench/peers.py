"""DuckDB, the peer `make bench` measures Tally's Spark job and API against.

The SQL is generated from the same metric spec the job uses (tally/metrics.yaml);
the default source's validity rules are written here in DuckDB's dialect (the
spec's are Spark SQL), so the peer computes the same validity rules, the same
per-hour de-duplication, the same metrics and the same slices of the sample table.
Differences, all in DuckDB's favour: its distinct counts are bare estimates,
not mergeable sketches that the API can union, and it writes no quarantine or
run statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from tally.core.spec import UNKNOWN, Kind, Metric, MetricSpec

PURCHASE = "purchase"


def connect(threads: int = 2) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")  # buckets are UTC hours, as in the job
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def deduplicated_events_sql(files: Sequence[Path]) -> str:
    """Valid, de-duplicated events of ``files`` (raw ``dt=/hour=`` folders), with ``_hour``."""
    listing = ", ".join(_quote(str(f)) for f in files)
    blank = "coalesce({0}, '') = ''".format
    invalid = " OR ".join(
        [
            blank("event_id"),
            blank("user_id"),
            blank("event_type"),
            "event_time IS NULL",
            "event_time < _hour OR event_time >= _hour + INTERVAL 1 HOUR",
            f"(event_type = {_quote(PURCHASE)} AND (amount IS NULL OR isnan(amount) OR isinf(amount) OR amount < 0))",
        ]
    )
    unknown = _quote(UNKNOWN)
    return f"""
        WITH raw AS (
            SELECT event_id, event_time::TIMESTAMP AS event_time, user_id, session_id, event_type,
                   amount::DOUBLE AS amount, country, platform,
                   dt::TIMESTAMP + hour::INTEGER * INTERVAL 1 HOUR AS _hour
            FROM read_parquet([{listing}], hive_partitioning = true, union_by_name = true)
        ),
        valid AS (
            SELECT _hour, event_id, event_time, user_id, session_id, event_type, amount,
                   coalesce(country, {unknown}) AS country, coalesce(platform, {unknown}) AS platform
            FROM raw WHERE NOT ({invalid})
        )
        SELECT * FROM valid
        QUALIFY row_number() OVER (
            PARTITION BY _hour, event_id
            ORDER BY event_time, user_id, session_id, event_type, amount, country, platform
        ) = 1
    """


def _aggregate(metric: Metric) -> str:
    conditions = [f"{column} IN ({', '.join(_quote(v) for v in values)})" for column, values in metric.filter]
    where = f" FILTER (WHERE {' AND '.join(conditions)})" if conditions else ""
    if metric.kind is Kind.COUNT:
        return f"count(*){where}"
    if metric.kind is Kind.SUM:
        return f"coalesce(sum({metric.field}){where}, 0)"
    if metric.kind is Kind.COUNT_DISTINCT:
        return f"approx_count_distinct({metric.field}){where}"
    if metric.kind in (Kind.MIN, Kind.MAX):
        return f"{metric.kind.value}({metric.field}){where}"
    if metric.kind is Kind.QUANTILE:  # the same work a sketch does: an approximate quantile
        return f"approx_quantile({metric.field}, {metric.q}){where}"
    raise ValueError(f"{metric.name}: ratios are computed at read time")


def rollup_sql(spec: MetricSpec, files: Sequence[Path]) -> str:
    """Every stored metric for every slice of every hour of ``files``, in one query."""
    sets = sorted({dims for m in spec.stored for dims in m.slice_dimension_sets()}, key=lambda s: (len(s), s))
    grouping = ", ".join("(" + ", ".join(["_hour", *dims]) + ")" for dims in sets)
    metrics = ", ".join(f"{_aggregate(m)} AS {m.name}" for m in spec.stored)
    dims = ", ".join(spec.dimensions)
    return f"""
        WITH events AS ({deduplicated_events_sql(files)})
        SELECT _hour, {dims}, {metrics}
        FROM events GROUP BY GROUPING SETS ({grouping})
    """


def run_rollup(con: duckdb.DuckDBPyConnection, spec: MetricSpec, files: Sequence[Path], out: Path) -> int:
    """Compute the rollup of ``files`` and write it as Parquet to ``out``; returns its rows."""
    con.execute(f"COPY ({rollup_sql(spec, files)}) TO {_quote(str(out))} (FORMAT parquet)")
    return con.execute(f"SELECT count(*) FROM read_parquet({_quote(str(out))})").fetchone()[0]


def daily_dashboard_sql(files: Sequence[Path]) -> str:
    """What a dashboard asks on request: daily active users (exact) and revenue, per UTC day."""
    return f"""
        WITH events AS ({deduplicated_events_sql(files)})
        SELECT date_trunc('day', _hour) AS day,
               count(DISTINCT user_id) AS active_users,
               coalesce(sum(amount) FILTER (WHERE event_type = {_quote(PURCHASE)}), 0) AS revenue
        FROM events GROUP BY 1 ORDER BY 1
    """
