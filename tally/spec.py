"""The metric spec: loading, validation and the typed model every component reads.

The spec file (``metrics.yaml`` by default, ``TALLY_SPEC_PATH`` to override) is the
only place a metric is defined. An invalid spec fails at load with a
:class:`SpecError` naming the file, the metric and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from tally.events import DIMENSION_COLUMNS

GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")
MAX_WINDOW_DAYS = 90
SUMMABLE_FIELDS: tuple[str, ...] = ("amount",)
DISTINCT_FIELDS: tuple[str, ...] = ("user_id", "session_id", "event_id")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_METRIC_KEYS = {
    "name",
    "description",
    "unit",
    "kind",
    "field",
    "filter",
    "dimensions",
    "numerator",
    "denominator",
    "grains",
    "max_window_days",
}


class Kind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    COUNT_DISTINCT = "count_distinct"
    RATIO = "ratio"


class SpecError(ValueError):
    """The spec file is invalid; the message names the file, metric and field."""


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    kind: Kind
    dimensions: tuple[str, ...]
    grains: tuple[str, ...] = GRAINS
    field: str | None = None
    # (column, allowed values) pairs, all of which must hold.
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()
    numerator: str | None = None
    denominator: str | None = None
    # A ratio's side may be read over a rolling window of its own (e.g. DAU / 30-day actives).
    numerator_window_days: int | None = None
    denominator_window_days: int | None = None
    # Largest `window=<N>d` a request may ask for; 0 means no windows.
    max_window_days: int = MAX_WINDOW_DAYS

    @property
    def is_ratio(self) -> bool:
        return self.kind is Kind.RATIO

    @property
    def is_distinct(self) -> bool:
        return self.kind is Kind.COUNT_DISTINCT

    def slice_dimension_sets(self) -> list[tuple[str, ...]]:
        """Every subset of the metric's dimensions (sorted), the empty total first."""
        dims = tuple(sorted(self.dimensions))
        return [combo for size in range(len(dims) + 1) for combo in combinations(dims, size)]


@dataclass(frozen=True)
class MetricSpec:
    metrics: tuple[Metric, ...]
    sketch_lg_k: int = 14

    def get(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def stored(self) -> tuple[Metric, ...]:
        """Metrics with their own rollup rows (ratios are computed from their parts)."""
        return tuple(m for m in self.metrics if not m.is_ratio)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension any metric uses, in contract order."""
        used = {d for m in self.metrics for d in m.dimensions}
        return tuple(d for d in DIMENSION_COLUMNS if d in used)


def load_spec(path: Path) -> MetricSpec:
    """Read and validate a spec file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(document, source=str(path))


def parse_spec(document: Any, *, source: str = "<spec>") -> MetricSpec:
    """Validate a parsed spec document and build the typed model."""
    if not isinstance(document, Mapping) or not isinstance(document.get("metrics"), list):
        raise SpecError(f"{source}: expected a mapping with a 'metrics' list")
    lg_k = document.get("sketch_lg_k", 14)
    if not isinstance(lg_k, int) or isinstance(lg_k, bool) or not 4 <= lg_k <= 21:
        raise SpecError(f"{source}: field 'sketch_lg_k': must be an integer from 4 to 21")
    metrics: list[Metric] = []
    for index, raw in enumerate(document["metrics"]):
        metrics.append(_parse_metric(raw, index=index, source=source))
    names = [m.name for m in metrics]
    for name in names:
        if names.count(name) > 1:
            raise SpecError(f"{source}: metric {name!r}: field 'name': defined more than once")
    by_name = {m.name: m for m in metrics}
    for metric in metrics:
        if metric.is_ratio:
            _check_ratio(metric, by_name, source)
    return MetricSpec(metrics=tuple(metrics), sketch_lg_k=lg_k)


def _parse_metric(raw: Any, *, index: int, source: str) -> Metric:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{source}: metric #{index + 1}: expected a mapping")
    name = raw.get("name")
    where = f"{source}: metric {name!r}" if isinstance(name, str) else f"{source}: metric #{index + 1}"

    def fail(field: str, problem: str) -> SpecError:
        return SpecError(f"{where}: field {field!r}: {problem}")

    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", "must be lower_snake_case, starting with a letter")
    unknown = sorted(set(raw) - _METRIC_KEYS)
    if unknown:
        raise fail(unknown[0], "unknown field")
    for text_field in ("description", "unit"):
        if not isinstance(raw.get(text_field), str) or not raw[text_field].strip():
            raise fail(text_field, "required, a non-empty string")
    try:
        kind = Kind(raw.get("kind"))
    except ValueError:
        raise fail("kind", f"must be one of {', '.join(k.value for k in Kind)}") from None

    dimensions = raw.get("dimensions", [])
    if not isinstance(dimensions, list) or not all(isinstance(d, str) for d in dimensions):
        raise fail("dimensions", "must be a list of dimension names")
    for dim in dimensions:
        if dim not in DIMENSION_COLUMNS:
            raise fail("dimensions", f"unknown dimension {dim!r}; known: {', '.join(DIMENSION_COLUMNS)}")
    if len(set(dimensions)) != len(dimensions):
        raise fail("dimensions", "lists a dimension twice")

    grains = raw.get("grains", list(GRAINS))
    if not isinstance(grains, list) or not grains or any(g not in GRAINS for g in grains):
        raise fail("grains", f"must be a non-empty list drawn from {', '.join(GRAINS)}")

    field = raw.get("field")
    if kind is Kind.SUM and field not in SUMMABLE_FIELDS:
        raise fail("field", f"a sum needs a numeric field: {', '.join(SUMMABLE_FIELDS)}")
    if kind is Kind.COUNT_DISTINCT and field not in DISTINCT_FIELDS:
        raise fail("field", f"count_distinct needs one of {', '.join(DISTINCT_FIELDS)}")
    if kind in (Kind.COUNT, Kind.RATIO) and field is not None:
        raise fail("field", f"not allowed for kind {kind.value}")

    event_filter = _parse_filter(raw.get("filter"), fail)
    if kind is Kind.RATIO and event_filter:
        raise fail("filter", "a ratio takes the filters of its parts")
    numerator, numerator_window = _parse_ratio_part(raw.get("numerator"), "numerator", kind, fail)
    denominator, denominator_window = _parse_ratio_part(raw.get("denominator"), "denominator", kind, fail)
    has_part_window = numerator_window is not None or denominator_window is not None
    max_window = raw.get("max_window_days", 0 if has_part_window else MAX_WINDOW_DAYS)
    if not isinstance(max_window, int) or isinstance(max_window, bool) or not 0 <= max_window <= MAX_WINDOW_DAYS:
        raise fail("max_window_days", f"must be an integer from 0 to {MAX_WINDOW_DAYS}")
    if has_part_window and max_window:
        raise fail("max_window_days", "must be 0 when a side of the ratio has its own window")

    return Metric(
        name=name,
        description=raw["description"].strip(),
        unit=raw["unit"].strip(),
        kind=kind,
        dimensions=tuple(dimensions),
        grains=tuple(grains),
        field=field,
        filter=event_filter,
        numerator=numerator,
        denominator=denominator,
        numerator_window_days=numerator_window,
        denominator_window_days=denominator_window,
        max_window_days=max_window,
    )


def _parse_ratio_part(raw: Any, part: str, kind: Kind, fail: Any) -> tuple[str | None, int | None]:
    """A ratio side: a metric name, or ``{metric: name, window_days: N}``."""
    if kind is not Kind.RATIO:
        if raw is not None:
            raise fail(part, "only for kind ratio")
        return None, None
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, Mapping) and isinstance(raw.get("metric"), str) and set(raw) <= {"metric", "window_days"}:
        window = raw.get("window_days")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW_DAYS
        ):
            raise fail(part, f"window_days must be an integer from 1 to {MAX_WINDOW_DAYS}")
        return raw["metric"], window
    raise fail(part, "a ratio needs another metric's name, or {metric: name, window_days: N}")


def _parse_filter(raw: Any, fail: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise fail("filter", "must be a mapping of column to value(s)")
    parsed = []
    for column, values in sorted(raw.items()):
        if column not in DIMENSION_COLUMNS:
            raise fail("filter", f"cannot filter on {column!r}; use one of {', '.join(DIMENSION_COLUMNS)}")
        options = values if isinstance(values, list) else [values]
        if not options or not all(isinstance(v, str) and v for v in options):
            raise fail("filter", f"values for {column!r} must be non-empty strings")
        parsed.append((column, tuple(options)))
    return tuple(parsed)


def _check_ratio(metric: Metric, by_name: dict[str, Metric], source: str) -> None:
    for part in ("numerator", "denominator"):
        other = by_name.get(getattr(metric, part))
        problem = None
        if other is None:
            problem = f"no metric named {getattr(metric, part)!r}"
        elif other.is_ratio:
            problem = "must name a count, sum or count_distinct metric, not a ratio"
        elif not set(metric.dimensions) <= set(other.dimensions):
            problem = f"{other.name!r} lacks dimensions {sorted(set(metric.dimensions) - set(other.dimensions))}"
        if problem:
            raise SpecError(f"{source}: metric {metric.name!r}: field {part!r}: {problem}")
