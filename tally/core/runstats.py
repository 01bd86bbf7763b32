"""The run statistics: the one owner of their fields, per source and per hour.

The job writes one row per source and hour under ``rollups/stats`` (written last:
its presence marks the hour's rollup complete). Everything that shows them (the
manifest in Redis, ``GET /v1/runs``, ``tally status``, the task logs) reads the
hour's rows combined by :func:`combine`: the counts summed over the sources, and
each source's own row under ``sources``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, cast

from tally.core.layout import combined_fingerprint, format_instant


class FoldedDimension(TypedDict):
    """A dimension with more distinct values in an hour than its ``max_values`` (the cardinality guard).

    Its values beyond the hour's top ``max_values`` by row count were stored as ``other``.
    """

    source: str
    dimension: str
    distinct_values: int  # values seen in the hour (after de-duplication)
    max_values: int
    rows_folded: int  # counted rows whose value was stored as ``other``


class RunStats(TypedDict, total=False):
    """The statistics of one source's hour, or of an hour over its sources, as plain data.

    Every field may be absent: statistics written by older versions lack some, and
    only an hour's combined statistics have ``sources``.
    """

    source: str  # the source a row is of ("events" for statistics older than sources)
    rows_read: int
    valid_rows: int
    invalid_rows: int
    duplicate_rows: int
    counted_events: int
    invalid_by_reason: dict[str, int]
    computed_at: str  # an instant, as format_instant writes it
    input_fingerprint: str | None
    metric_fingerprints: dict[str, str]  # stored metric -> the fingerprint of its definition
    application_seconds: float
    application_hours: int
    input_files: int
    folded_dimensions: list[FoldedDimension]  # empty when no dimension exceeded its max_values
    sources: dict[str, RunStats]  # an hour's combined statistics: each source's row


# Every field of the statistics, in the order they are shown.
FIELDS: tuple[str, ...] = tuple(RunStats.__annotations__)
# The counts of a source's hour, each summed over the sources of an hour.
COUNT_FIELDS: tuple[str, ...] = ("rows_read", "valid_rows", "invalid_rows", "duplicate_rows", "counted_events")
# Fields of an hour that are the latest over its sources.
LATEST_FIELDS: tuple[str, ...] = ("computed_at", "application_seconds", "application_hours")
# The columns of a stored statistics row (``rollups/stats``, one per source and hour)
# after its partition columns, in the order written, with their Spark SQL types.
# ``input_files`` is not stored: the job adds it from the files it listed.
STORED_TYPES: Mapping[str, str] = {
    **{name: "bigint" for name in COUNT_FIELDS},
    "invalid_by_reason": "map<string,bigint>",
    "computed_at": "timestamp",
    "source": "string",
    "input_fingerprint": "string",
    "metric_fingerprints": "map<string,string>",
    "application_seconds": "double",
    "application_hours": "bigint",
    "folded_dimensions": "array<struct<source:string,dimension:string,distinct_values:bigint,"
    "max_values:bigint,rows_folded:bigint>>",
}
# Fields of a row that are about the row's place, not its content.
LOCATION_FIELDS: tuple[str, ...] = ("dt", "hour")


# Statistics written before the field was renamed (it was never one hour's time).
RENAMED_FIELDS: Mapping[str, str] = {"duration_seconds": "application_seconds"}


def plain(value: Any) -> Any:
    """A statistics value as JSON-ready data (pyarrow gives maps as (key, value) lists)."""
    if isinstance(value, datetime):
        return format_instant(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, list) and all(isinstance(x, tuple) and len(x) == 2 for x in value):
        return dict(value)
    return value


def current_names(stats: Mapping[str, Any]) -> RunStats:
    """Statistics with today's field names (manifests published earlier keep the old ones)."""
    return cast(RunStats, {RENAMED_FIELDS.get(key, key): value for key, value in stats.items()})


def source_row(row: Mapping[str, Any]) -> RunStats:
    """One stored statistics row as plain data, without its partition columns."""
    return current_names({key: _plain_field(key, value) for key, value in row.items() if key not in LOCATION_FIELDS})


def _plain_field(name: str, value: Any) -> Any:
    # An empty list is an empty map to `plain`; an array field's empty list must stay a list.
    if STORED_TYPES.get(name, "").startswith("array<"):
        return [dict(item) for item in value or []]
    return plain(value)


def combine(rows: Sequence[Mapping[str, Any]]) -> RunStats:
    """An hour's statistics from its sources' rows (plain data, see :func:`source_row`).

        The counts and the invalid rows by reason are summed (a reason two sources
        share adds up); ``input_fingerprint`` covers every source's input;
        ``metric_fingerprints`` joins the sources' metrics, ``folded_dimensions`` their
    folds; ``sources`` keeps each row.
        An hour of a single source is that source's row as it is (``source`` names it).
    """
    if not rows:
        return RunStats()
    if len(rows) == 1:  # one source: its row is the hour's statistics (and names the source)
        return cast(RunStats, {"source": "events", **rows[0]})
    by_source = {str(row.get("source") or "events"): dict(row) for row in rows}
    combined: dict[str, Any] = {}
    for name in COUNT_FIELDS:
        if all(name in row for row in rows):
            combined[name] = sum(int(row[name]) for row in rows)
    reasons: dict[str, int] = {}
    for row in rows:
        for reason, count in dict(row.get("invalid_by_reason") or {}).items():
            reasons[reason] = reasons.get(reason, 0) + int(count)
    combined["invalid_by_reason"] = reasons
    for name in LATEST_FIELDS:
        present = [row[name] for row in rows if row.get(name) is not None]
        if present:
            combined[name] = max(present)
    if all("input_files" in row for row in rows):
        combined["input_files"] = sum(int(row["input_files"]) for row in rows)
    fingerprints = {name: row.get("input_fingerprint") for name, row in by_source.items()}
    if all(fingerprints.values()):
        combined["input_fingerprint"] = combined_fingerprint({k: str(v) for k, v in fingerprints.items()})
    definitions: dict[str, str] = {}
    for row in rows:
        definitions.update(dict(row.get("metric_fingerprints") or {}))
    combined["metric_fingerprints"] = definitions
    if any("folded_dimensions" in row for row in rows):
        combined["folded_dimensions"] = [fold for row in rows for fold in row.get("folded_dimensions") or []]
    combined["sources"] = by_source
    return cast(RunStats, combined)


@dataclass(frozen=True)
class BuiltHour:
    """What an hour's statistics say it was built from."""

    sources: Mapping[str, str | None]  # source -> the input fingerprint of its files
    definitions: Mapping[str, str]  # stored metric -> the fingerprint of its definition (empty: not recorded)

    @property
    def input_fingerprint(self) -> str | None:
        """The fingerprint over every source's input; None for statistics written before fingerprints."""
        if not self.sources or any(fp is None for fp in self.sources.values()):
            return None
        return combined_fingerprint({name: str(fp) for name, fp in self.sources.items()})


def built_hours(data_dir: Path, hours: Iterable[datetime]) -> dict[datetime, BuiltHour]:
    """For each of ``hours`` with a complete rollup: what it was built from (one small file read per hour or day).

    Shared by the late-data, redefinition and unpublished-rollup checks; reads an hour's
    own partition or its compacted day (:mod:`tally.core.rollup_forms`), whichever it is read from.
    """
    from tally.core.rollup_forms import read_stats_tables  # the only user here; keeps the import block untouched

    built: dict[datetime, BuiltHour] = {}
    for hour, table in read_stats_tables(data_dir, hours).items():
        rows = table.to_pylist()
        built[hour] = BuiltHour(
            sources={str(row.get("source") or "events"): row.get("input_fingerprint") for row in rows},
            definitions={m: fp for row in rows for m, fp in plain(row.get("metric_fingerprints") or {}).items()},
        )
    return built


def built_fingerprints(data_dir: Path, hours: Iterable[datetime]) -> dict[datetime, str | None]:
    """For each of ``hours`` with a complete rollup: the input fingerprint it was built from."""
    return {hour: built.input_fingerprint for hour, built in built_hours(data_dir, hours).items()}


@dataclass(frozen=True)
class FoldWarning:
    """A dimension folded into ``other`` in some of a range's hours (for ``tally status`` and ``/health``)."""

    source: str
    dimension: str
    max_values: int
    hours: tuple[datetime, ...]  # oldest first
    distinct_values: int  # the most seen in one of those hours
    rows_folded: int  # over those hours

    @property
    def message(self) -> str:
        return (
            f"dimension {self.dimension!r} of source {self.source!r} had up to {self.distinct_values:,} distinct "
            f"values an hour (max_values {self.max_values:,}) in {len(self.hours)} hour(s): {self.rows_folded:,} "
            "rows stored as 'other'; raise max_values, or slice by a coarser expression"
        )


def fold_warnings(runs: Iterable[tuple[datetime, Mapping[str, Any]]]) -> list[FoldWarning]:
    """Per (source, dimension): the hours of ``runs`` (hour, its statistics) in which it was folded."""
    found: dict[tuple[str, str], list[tuple[datetime, Mapping[str, Any]]]] = {}
    for hour, stats in runs:
        for fold in stats.get("folded_dimensions") or []:
            found.setdefault((str(fold["source"]), str(fold["dimension"])), []).append((hour, fold))
    return [
        FoldWarning(
            source=source,
            dimension=dimension,
            max_values=int(max(folds, key=lambda f: f[0])[1]["max_values"]),  # the newest hour's
            hours=tuple(sorted(hour for hour, _ in folds)),
            distinct_values=max(int(fold["distinct_values"]) for _, fold in folds),
            rows_folded=sum(int(fold["rows_folded"]) for _, fold in folds),
        )
        for (source, dimension), folds in sorted(found.items())
    ]
