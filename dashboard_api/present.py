"""How a metric's figures are served: counts as integers, other figures as floats, unknowns as null."""

from __future__ import annotations

from tally.core.spec import Kind

Number = int | float


def divide(numerator: Number | None, denominator: Number | None) -> float | None:
    """A ratio's value: null when a side is unknown or the denominator is 0 (never infinity)."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def present(value: float | None, kind: Kind) -> Number | None:
    """How a value is served: counts as integers; sums, extremes, quantiles and ratios as floats."""
    if value is None:
        return None
    if kind in (Kind.COUNT, Kind.COUNT_DISTINCT):
        return round(value)
    # 12 significant digits drop binary noise from summing decimals (1983.3400000000001).
    return float(f"{value:.12g}")
