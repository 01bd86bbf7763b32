"""The metric spec: loading, validation and the typed model every component reads.

The spec file (``metrics.yaml`` by default, ``TALLY_SPEC_PATH`` to override) is the
only place a source table or a metric is defined:

* ``sources``: each event table Tally reads, by name: where an hour's files are
  (``path`` with ``{YYYY}``/``{MM}``/``{DD}``/``{HH}``), its time column, an
  optional id that de-duplicates rows within an hour, every column read with its
  type, which rows are invalid (``required`` columns, then the time, then
  ``rules``) and its dimensions (a column or a Spark SQL expression);
* ``metrics``: what is aggregated from which source, by which dimensions.

Everything here is structural: names, types, references and placeholders,
checked without Spark. The SQL inside (``field``, ``where``, ``rules``, dimension
``expr``) is checked against the declared columns by Spark's analyzer in
:mod:`jobs.spec_check`. A spec with problems raises :class:`SpecError`, one line
per problem, each naming the file, the source or metric, and the field.

This module is the spec's public entry: :func:`load_spec` and :func:`parse_spec`
check the document as a whole (top-level fields, ``sketch_lg_k``, metric names,
``dashboard``) and hand each section to its parser, :mod:`tally.core.spec_sources`
and :mod:`tally.core.spec_metrics`. The typed model they build is defined in
:mod:`tally.core.spec_model` and the errors in :mod:`tally.core.spec_errors`; both
are imported from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tally.core.spec_errors import Problem, SpecError
from tally.core.spec_metrics import parse_metric, ratio_problems
from tally.core.spec_model import (
    API_PARAMETERS,
    COLUMN_TYPES,
    GRAINS,
    MAX_WINDOW_DAYS,
    NUMERIC_TYPES,
    RESERVED_COLUMN_PREFIXES,
    RESERVED_COLUMNS,
    ROLLUP_COLUMNS,
    TIME_UNITS,
    UNKNOWN,
    Dimension,
    Kind,
    Merge,
    Metric,
    MetricSpec,
    Source,
    TimeColumn,
    metric_fingerprint,
    quote_column,
)
from tally.core.spec_sources import parse_sources

__all__ = [
    "API_PARAMETERS",
    "COLUMN_TYPES",
    "GRAINS",
    "MAX_WINDOW_DAYS",
    "NUMERIC_TYPES",
    "RESERVED_COLUMNS",
    "RESERVED_COLUMN_PREFIXES",
    "ROLLUP_COLUMNS",
    "TIME_UNITS",
    "UNKNOWN",
    "Dimension",
    "Kind",
    "Merge",
    "Metric",
    "MetricSpec",
    "Source",
    "SpecError",
    "TimeColumn",
    "load_spec",
    "metric_fingerprint",
    "parse_spec",
    "quote_column",
]

DEFAULT_CARDS = 5  # headline metrics when the spec names none: the first metrics
_TOP_KEYS = {"sketch_lg_k", "sources", "metrics", "dashboard"}


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
    """Validate a parsed spec document and build the typed model (every problem at once)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("metrics"), list):
        raise SpecError(f"{source}: expected a mapping with a 'metrics' list")
    problems: list[str] = []
    for key in sorted(set(document) - _TOP_KEYS, key=str):
        problems.append(f"{source}: field {key!r}: unknown top-level field; known: {', '.join(sorted(_TOP_KEYS))}")
    lg_k = document.get("sketch_lg_k", 14)
    if not isinstance(lg_k, int) or isinstance(lg_k, bool) or not 4 <= lg_k <= 21:
        problems.append(f"{source}: field 'sketch_lg_k': must be an integer from 4 to 21")
    sources = parse_sources(document.get("sources"), source, problems)
    by_source = {s.name: s for s in sources}
    metrics: list[Metric] = []
    broken: set[str] = set()  # metrics with a problem: not reported again where they are referenced
    for index, raw in enumerate(document["metrics"]):
        try:
            metrics.append(parse_metric(raw, index=index, file=source, sources=by_source))
        except Problem as problem:
            problems.append(str(problem))
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                broken.add(raw["name"])
    names = [m.name for m in metrics]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: metric {name!r}: field 'name': defined more than once")
    by_name = {m.name: m for m in metrics}
    for metric in metrics:
        if metric.is_ratio and not {metric.numerator, metric.denominator} & broken:
            problems += ratio_problems(metric, by_name, source)
    cards = _parse_cards(document.get("dashboard"), [*names, *broken], source, problems)
    if problems:
        raise SpecError(problems)
    lg_k_value = int(lg_k)
    fingerprints = {m.name: metric_fingerprint(by_source, m, lg_k_value) for m in metrics if not m.is_ratio}
    return MetricSpec(
        metrics=tuple(metrics),
        sketch_lg_k=lg_k_value,
        sources=tuple(sources),
        cards=cards,
        fingerprints=fingerprints,
    )


def _parse_cards(raw: Any, names: list[str], file: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return tuple(names[:DEFAULT_CARDS])
    if not isinstance(raw, Mapping) or set(raw) != {"cards"} or not isinstance(raw["cards"], list):
        problems.append(f"{file}: field 'dashboard': must be {{cards: [metric, ...]}}")
        return ()
    for card in raw["cards"]:
        if card not in names:
            problems.append(f"{file}: field 'dashboard': card {card!r} is not a metric of the spec")
    return tuple(c for c in raw["cards"] if c in names)
