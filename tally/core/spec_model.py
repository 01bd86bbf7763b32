"""The spec's typed model: sources, dimensions, metrics, and what names and types they may use.

Everything here is built by :func:`tally.core.spec.parse_spec` from a valid spec
and read by every component (import it from :mod:`tally.core.spec`). It also owns
:func:`metric_fingerprint`, the digest of what decides a stored metric's numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations
from typing import Any

from tally.core.rollup import PARTITION_COLUMNS, VALUE_COLUMNS

GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")
MAX_WINDOW_DAYS = 90
# Column types a source may declare, as Spark SQL type names.
COLUMN_TYPES: tuple[str, ...] = ("string", "long", "double", "timestamp", "boolean")
NUMERIC_TYPES: tuple[str, ...] = ("long", "double")
TIME_UNITS: tuple[str, ...] = ("s", "ms", "us")
UNKNOWN = "unknown"  # the value of a dimension that is null
# The cardinality guard: a dimension keeps at most this many values an hour (by row
# count), unless it declares its own ``max_values``; the rest are stored as OTHER.
DEFAULT_MAX_VALUES = 1000
OTHER = "other"
# Query parameters of GET /v1/metrics/{name}: a dimension may not be named like one,
# since any other parameter of a request is a filter on a dimension.
API_PARAMETERS: tuple[str, ...] = (
    "grain",
    "start",
    "end",
    "group_by",
    "tz",
    "window",
    "limit",
    "q",
    "bounds",
    "format",
)
# Columns of the rollup table besides the dimensions.
# Columns of the rollup a dimension may not be named after.
ROLLUP_COLUMNS: tuple[str, ...] = (*PARTITION_COLUMNS, *VALUE_COLUMNS)
# Names the job gives its own columns (and the quarantine's partition columns):
# a source column may not be named so.
RESERVED_COLUMNS: tuple[str, ...] = ("dt", "hour", "reason", "_hour", "_real", "_counted", "_copy")
RESERVED_COLUMN_PREFIXES: tuple[str, ...] = ("_in_", "_g_", "_reason_")
# What a source, dimension, metric or rule reason may be named.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Kind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    COUNT_DISTINCT = "count_distinct"
    MIN = "min"
    MAX = "max"
    QUANTILE = "quantile"
    RATIO = "ratio"


class Merge(StrEnum):
    """How a stored metric's hourly figures combine into any longer span or coarser slice.

    The one place a kind is mapped to its arithmetic: every layer (the job's slices,
    day aggregates, the API's reads) asks a metric for its ``merge``.
    """

    SUM = "sum"  # counts and sums add
    MIN = "min"
    MAX = "max"
    HLL = "hll"  # HyperLogLog sketches union
    THETA = "theta"  # theta sketches union (and intersect: retention, funnels)
    KLL = "kll"  # KLL doubles sketches merge (quantiles)


# Merges whose hours carry a serialized sketch beside their value.
SKETCH_MERGES: frozenset[Merge] = frozenset({Merge.HLL, Merge.THETA, Merge.KLL})
# count_distinct's ``sketch``: HLL (smaller) or theta (set operations).
DISTINCT_SKETCHES: tuple[str, ...] = ("hll", "theta")
DEFAULT_QUANTILE = 0.5
DEFAULT_KLL_K = 200
DEFAULT_LG_NOM_ENTRIES = 12


@dataclass(frozen=True)
class TimeColumn:
    """The column that places a row in time: a timestamp, or integer epoch ``unit``s."""

    column: str
    unit: str | None = None  # None: a timestamp column

    def as_dict(self) -> dict[str, str | None]:
        return {"column": self.column, "unit": self.unit}


@dataclass(frozen=True)
class Dimension:
    """A slice key of a source: a column, or a Spark SQL expression over its columns."""

    name: str
    column: str | None = None
    expr: str | None = None
    max_values: int = DEFAULT_MAX_VALUES  # values kept an hour; the rest are stored as OTHER

    @property
    def sql(self) -> str:
        """The dimension as Spark SQL (a column is quoted, so any column name works)."""
        return self.expr if self.expr is not None else quote_column(self.column or self.name)


@dataclass(frozen=True)
class Source:
    """One hourly-partitioned Parquet event table, as declared under ``sources``."""

    name: str
    path: str
    time: TimeColumn
    columns: tuple[tuple[str, str], ...]  # (column, type) in declared order
    dimensions: tuple[Dimension, ...] = ()
    id: str | None = None
    required: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()  # (reason, SQL a valid row satisfies)

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason a row of this source can be invalid, in the order they are checked."""
        time = self.time.column
        return (
            *[f"missing_{column}" for column in self.required],
            f"missing_{time}",
            f"{time}_outside_hour",
            *[reason for reason, _ in self.rules],
        )

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)

    def definition(self) -> dict[str, Any]:
        """What decides the rows a metric of this source sees (part of its fingerprint)."""
        return {
            "path": self.path,
            "time": self.time.as_dict(),
            "id": self.id,
            "columns": [list(c) for c in self.columns],
            "required": list(self.required),
            "rules": [list(r) for r in self.rules],
        }


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    kind: Kind
    dimensions: tuple[str, ...]
    grains: tuple[str, ...] = GRAINS
    source: str | None = None  # None only for ratios (their parts have sources)
    field: str | None = None  # a column or Spark SQL expression over the source's columns
    # (dimension or column, allowed values) pairs, all of which must hold.
    filter: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    where: str | None = None  # Spark SQL condition over the source's columns
    numerator: str | None = None
    denominator: str | None = None
    # A ratio's side may be read over a rolling window of its own (e.g. DAU / 30-day actives).
    numerator_window_days: int | None = None
    denominator_window_days: int | None = None
    # Largest `window=<N>d` a request may ask for; 0 means no windows.
    max_window_days: int = MAX_WINDOW_DAYS
    # The declared `slices`: dimension sets stored besides the total (each sorted), in
    # declared order; None stores every combination of `dimensions`.
    slices: tuple[tuple[str, ...], ...] | None = None
    # count_distinct: "hll" (default) or "theta", with its lg of nominal entries.
    sketch: str = "hll"
    lg_nom_entries: int = DEFAULT_LG_NOM_ENTRIES
    # quantile: the q served when a request names none, and the KLL sketch's k.
    q: float = DEFAULT_QUANTILE
    kll_k: int = DEFAULT_KLL_K

    @property
    def is_ratio(self) -> bool:
        return self.kind is Kind.RATIO

    @property
    def is_distinct(self) -> bool:
        return self.kind is Kind.COUNT_DISTINCT

    @property
    def is_theta(self) -> bool:
        return self.kind is Kind.COUNT_DISTINCT and self.sketch == "theta"

    @property
    def merge(self) -> Merge:
        """How the metric's hours and slices combine (a ratio has no merge of its own)."""
        if self.kind is Kind.COUNT_DISTINCT:
            return Merge.THETA if self.sketch == "theta" else Merge.HLL
        merges = {Kind.COUNT: Merge.SUM, Kind.SUM: Merge.SUM, Kind.MIN: Merge.MIN, Kind.MAX: Merge.MAX}
        if self.kind is Kind.QUANTILE:
            return Merge.KLL
        if self.kind not in merges:
            raise ValueError(f"{self.name}: a ratio is computed from its parts, it has no merge")
        return merges[self.kind]

    @property
    def has_sketch(self) -> bool:
        """Whether its hours store a serialized sketch (distinct counts, quantiles) beside the value."""
        return not self.is_ratio and self.merge in SKETCH_MERGES

    def slice_dimension_sets(self) -> list[tuple[str, ...]]:
        """The dimension sets stored (each sorted), the empty total first.

        Every subset of the metric's dimensions, unless it declares ``slices``:
        then the total and those sets, in declared order.
        """
        if self.slices is not None:
            return [(), *self.slices]
        dims = tuple(sorted(self.dimensions))
        return [combo for size in range(len(dims) + 1) for combo in combinations(dims, size)]

    def covering_set(self, dims: Collection[str]) -> tuple[str, ...] | None:
        """The stored set that answers a query over ``dims`` (filters and group_by), or None.

        ``dims`` itself when stored; else the smallest stored set containing it (the
        first declared among equals), whose slices are merged at read time.
        """
        wanted = tuple(sorted(dims))
        if self.slices is None:
            return wanted if set(wanted) <= set(self.dimensions) else None
        covering = [s for s in self.slice_dimension_sets() if set(wanted) <= set(s)]
        return min(covering, key=len, default=None)  # min keeps the first of the fewest


@dataclass(frozen=True)
class MetricSpec:
    metrics: tuple[Metric, ...]
    sketch_lg_k: int = 14
    sources: tuple[Source, ...] = ()
    cards: tuple[str, ...] = ()  # the dashboard's headline metrics, in order
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # stored metric -> definition fingerprint

    def get(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def source(self, name: str) -> Source:
        found = next((s for s in self.sources if s.name == name), None)
        if found is None:
            raise LookupError(f"the spec has no source {name!r}")
        return found

    @property
    def stored(self) -> tuple[Metric, ...]:
        """Metrics with their own rollup rows (ratios are computed from their parts)."""
        return tuple(m for m in self.metrics if not m.is_ratio)

    def stored_of(self, source: str) -> tuple[Metric, ...]:
        return tuple(m for m in self.stored if m.source == source)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension any metric uses, in the order the sources declare them."""
        used = {d for m in self.metrics for d in m.dimensions}
        names = [d.name for s in self.sources for d in s.dimensions if d.name in used]
        return tuple(dict.fromkeys(names))

    def dimensions_of(self, source: str) -> tuple[str, ...]:
        """The dimensions a source's stored metrics use, in declared order."""
        used = {d for m in self.stored_of(source) for d in m.dimensions}
        return tuple(d.name for d in self.source(source).dimensions if d.name in used)


def quote_column(name: str) -> str:
    """A column name as a Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def metric_fingerprint(spec_sources: Mapping[str, Source], metric: Metric, sketch_lg_k: int) -> str:
    """A short digest of everything that decides a stored metric's numbers.

    Its kind, field, filter, where, dimensions and declared slices; its source's path, time, id,
    columns, required columns and rules; and the expressions of the dimensions it
    slices or filters by. An hour computed under another fingerprint holds numbers
    of another definition (see the README, "Changing the spec safely").
    """
    source = spec_sources[metric.source or ""]
    used = {*metric.dimensions, *(key for key, _ in metric.filter)}
    definition: dict[str, Any] = {
        "kind": metric.kind.value,
        "field": metric.field,
        "filter": [[key, list(values)] for key, values in metric.filter],
        "where": metric.where,
        "dimensions": list(metric.dimensions),
        "source": source.definition(),
        "dimension_sql": {d.name: d.sql for d in source.dimensions if d.name in used},
    }
    # Only a non-default max_values is recorded, so fingerprints from before the guard stand.
    guarded = {
        d.name: d.max_values
        for d in source.dimensions
        if d.name in metric.dimensions and d.max_values != DEFAULT_MAX_VALUES
    }
    if guarded:
        definition["dimension_max_values"] = guarded
    if metric.merge is Merge.HLL:
        definition["sketch_lg_k"] = sketch_lg_k
    elif metric.merge is Merge.THETA:  # only new kinds add keys: older fingerprints stand
        definition["sketch"] = {"family": "theta", "lg_nom_entries": metric.lg_nom_entries}
    elif metric.merge is Merge.KLL:
        definition["sketch"] = {"family": "kll", "k": metric.kll_k}  # q is a read-time default, not stored
    if metric.slices is not None:  # only when declared: undeclared metrics keep the fingerprints they had
        definition["slices"] = [list(s) for s in metric.slices]
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
