"""Checks a build must pass before it goes live, and the movements worth reporting.

A failed check raises :class:`VerificationError` with every reason; the caller
then switches nothing, so the previous build stays served. Movements against the
previous build of the same hour are only reported (logged and kept in the run
statistics), never blocking: real traffic can jump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.keys import TOTAL_SLICE


class VerificationError(RuntimeError):
    """A build failed a pre-publish check; nothing was switched."""


@dataclass(frozen=True)
class LiveBuild:
    """What the currently served build of an hour says about itself."""

    build: str
    stats: Mapping[str, Any] = field(default_factory=dict)
    totals: Mapping[str, float] = field(default_factory=dict)


def problems(hour: str, stats: Mapping[str, Any], totals: Mapping[str, float], live: LiveBuild | None) -> list[str]:
    """Blocking problems of a new build of ``hour`` (empty when it may go live)."""
    found = []
    if {"rows_read", "valid_rows", "invalid_rows"} <= stats.keys():
        if stats["rows_read"] != stats["valid_rows"] + stats["invalid_rows"]:
            found.append(
                f"{hour}: rows read ({stats['rows_read']}) != valid ({stats['valid_rows']}) "
                f"+ invalid ({stats['invalid_rows']})"
            )
        by_reason = stats.get("invalid_by_reason") or {}
        if by_reason and sum(by_reason.values()) != stats["invalid_rows"]:
            found.append(
                f"{hour}: invalid rows by reason add up to {sum(by_reason.values())}, not {stats['invalid_rows']}"
            )
        counted = stats.get("counted_events")
        if counted is not None and stats["valid_rows"] - stats.get("duplicate_rows", 0) != counted:
            found.append(f"{hour}: valid - duplicate rows != counted events ({counted})")
    if stats.get("counted_events", 0) > 0 and totals and not any(totals.values()):
        found.append(f"{hour}: {stats['counted_events']} valid events were read but every metric total is 0")
    if live is not None and stats.get("rows_read") == 0 and live.stats.get("rows_read", 0) > 0:
        found.append(
            f"{hour}: the input is now empty, but the live build {live.build} was computed from "
            f"{live.stats['rows_read']} rows; refusing to replace it with zeros (check the input folder, "
            "or publish with --force if the data was removed on purpose)"
        )
    return found


def movements(totals: Mapping[str, float], live: LiveBuild | None, max_factor: float) -> dict[str, dict[str, float]]:
    """Metrics whose total moved by more than ``max_factor`` (either way) against the live build."""
    if live is None:
        return {}
    moved = {}
    for metric, new in totals.items():
        old = live.totals.get(metric)
        if old is None or (old == 0 and new == 0):
            continue
        factor = float("inf") if old == 0 or new == 0 else max(new / old, old / new)
        if factor > max_factor:
            moved[metric] = {"previous": old, "new": new, "factor": factor if factor != float("inf") else -1.0}
    return moved


def totals_of(values: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each metric's all-events total from a build's values."""
    return {metric: slices.get(TOTAL_SLICE, 0.0) for metric, slices in values.items()}


def over_budget(hours: Sequence[str], current: int, growth_by_metric: Mapping[str, int], budget: int) -> str | None:
    """Why publishing ``hours`` must not go ahead: Redis would hold more than ``budget`` bytes (None: it fits).

    ``current`` is what the prefix holds now; ``growth_by_metric`` what the publish
    adds per metric (its new keys less the builds it supersedes; manifests under
    ``""``). The message names the metric that grew most and the setting.
    """
    projected = current + sum(growth_by_metric.values())
    if projected <= budget:
        return None
    metric, grew = max(growth_by_metric.items(), key=lambda item: (item[1], item[0] != ""), default=("", 0))
    name = repr(metric) if metric else "the manifests"
    span = hours[0] if len(hours) == 1 else f"{hours[0]} .. {hours[-1]} ({len(hours)} hours)"
    return (
        f"publishing {span} would bring Redis under this prefix to {projected} bytes, over the budget of "
        f"{budget} bytes (TALLY_REDIS_BUDGET_MB); the metric that grew most is "
        f"{name} (+{grew} bytes). Nothing was switched: the previous state stays served. "
        "Raise TALLY_REDIS_BUDGET_MB, or lower TALLY_HOUR_RETENTION_DAYS or the metric's slices"
    )
