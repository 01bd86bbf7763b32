"""Daily reports: what the example ``tally_daily_report`` DAG writes once a UTC day is complete.

A day is **complete** when each of its 24 hours has a live (published) build. Its report is
three files under ``<TALLY_DATA_DIR>/reports/``:

- ``<day>.csv``: one row per hour (``hour`` then one column per metric), the values the API
  serves for ``GET /v1/metrics/<name>?grain=hour`` over the day (empty where null);
- ``<day>.png``: a chart of the same values, one panel per metric;
- ``<day>.json``: the manifest, written last: the 24 builds and the metrics reported.

A day is reported again only when its builds changed (an hour was revised) or the list of
metrics did; re-running on the same data writes nothing. A day whose hours have left the hour
tier (``TALLY_HOUR_RETENTION_DAYS``) has no hourly values any more, and counts as incomplete.

The days to look at come from the asset events' ``extra`` (:mod:`tally.app.assets`); whether a
day is complete, and its values, come from Redis, read through the API's own planning and
evaluation code, so the CSV is the API's answer.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.core.layout import format_hour, parse_hour
from tally.core.settings import Settings

if TYPE_CHECKING:
    import redis
    from matplotlib.figure import Figure

    from cache.keys import KeyLayout
    from tally.core.spec import MetricSpec

log = logging.getLogger(__name__)

HOURS_PER_DAY = 24
# A metric column's values, hour 00..23; None where the API serves null.
Values = dict[str, list[float | None]]


@dataclass(frozen=True)
class ReportRun:
    """What :func:`write_reports` did, per day (XCom-ready text)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # reported before, on the same builds
    incomplete: list[str] = field(default_factory=list)  # some hour has no published build yet


def reports_dir(data_dir: Path) -> Path:
    return data_dir / "reports"


def report_paths(data_dir: Path, day: date) -> dict[str, Path]:
    """The report's files, by suffix."""
    folder = reports_dir(data_dir)
    return {suffix: folder / f"{day.isoformat()}.{suffix}" for suffix in ("csv", "png", "json")}


def days_in_events(extras: Iterable[Mapping[str, Any]], prefix: str) -> list[date]:
    """The UTC days holding an hour named by an asset event of ``prefix`` (others' events are ignored)."""
    days = set()
    for extra in extras:
        if extra.get("prefix", prefix) != prefix:
            continue
        for hour in [*extra.get("hours", []), *extra.get("revised", [])]:
            days.add(parse_hour(hour).date())
    return sorted(days)


def day_builds(client: redis.Redis, layout: KeyLayout, day: date) -> dict[str, str] | None:
    """hour -> live build of each of the day's hours; None while some hour has none."""
    from cache.reads import day_hours, read_pointers

    pointers = read_pointers(client, layout, day_hours(day))
    if len(pointers) < HOURS_PER_DAY:
        return None
    return {format_hour(hour): pointer.build for hour, pointer in sorted(pointers.items())}


def report_metrics(spec: MetricSpec, requested: Sequence[str]) -> list[str]:
    """The metrics reported: ``requested``, or the dashboard's cards (the spec's default metrics)."""
    names = list(requested) or list(spec.cards)
    unknown = [name for name in names if spec.get(name) is None]
    if unknown:
        known = ", ".join(m.name for m in spec.metrics)
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} for the daily report; the spec has: {known}")
    return names


def day_values(
    spec: MetricSpec, settings: Settings, client: redis.Redis, layout: KeyLayout, day: date, metrics: Sequence[str]
) -> Values:
    """Each metric's 24 hourly values, exactly as ``GET /v1/metrics/<name>?grain=hour`` serves them."""
    from dashboard_api.params import parse_series_query
    from dashboard_api.plan import plan_reads
    from dashboard_api.route_helpers import range_limits, read_or_cold
    from dashboard_api.series import build_series

    query_items = [("grain", "hour"), ("start", day.isoformat()), ("end", (day + timedelta(days=1)).isoformat())]
    values: Values = {}
    for name in metrics:
        metric = spec.get(name)
        assert metric is not None  # report_metrics checked the names
        query = parse_series_query(metric, query_items, range_limits(settings))
        plan = plan_reads(spec, query)
        [series] = build_series(spec, query, plan, read_or_cold(client, layout, plan))
        values[name] = [None if value is None else float(value) for _, value in series.points]
    return values


def write_csv(path: Path, day: date, values: Values) -> None:
    """``hour,<metric>,...``: one row per hour; ``repr`` keeps every float's digits, so the file equals the API."""
    from cache.reads import day_hours

    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["hour", *values])
        for index, hour in enumerate(day_hours(day)):
            row = [values[name][index] for name in values]
            writer.writerow([format_hour(hour), *("" if v is None else repr(v) for v in row)])


def chart(day: date, values: Values) -> Figure:
    """One panel per metric, hours 00..23 on the x axis (Agg canvas: no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 1.9 * max(1, len(values)) + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(values), 1, sharex=True, squeeze=False)[:, 0]
    hours = list(range(HOURS_PER_DAY))
    for ax, (name, series) in zip(axes, values.items(), strict=True):
        ax.plot(hours, [float("nan") if v is None else v for v in series], marker="o", markersize=3)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(hours[::2])
    axes[-1].set_xlabel("hour (UTC)")
    figure.suptitle(f"Tally daily report {day.isoformat()} (UTC)")
    return figure


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename: a reader (or a crash) never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def write_day_report(
    settings: Settings, spec: MetricSpec, client: redis.Redis, layout: KeyLayout, day: date, metrics: Sequence[str]
) -> str:
    """Write the day's report if it is complete and not reported on these builds: ``written``, ``unchanged``
    or ``incomplete``."""
    builds = day_builds(client, layout, day)
    if builds is None:
        return "incomplete"
    paths = report_paths(settings.data_dir, day)
    manifest = {"day": day.isoformat(), "prefix": layout.prefix, "metrics": list(metrics), "builds": builds}
    previous = _manifest(paths["json"])
    if previous is not None and {k: previous.get(k) for k in manifest} == manifest:
        return "unchanged"
    # A publish landing between the pointer read and this one leaves values newer than the manifest's
    # builds: the next run sees the builds moved and writes the day again.
    values = day_values(spec, settings, client, layout, day, metrics)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    _replace(paths["csv"], lambda p: write_csv(p, day, values))
    _replace(paths["png"], lambda p: chart(day, values).savefig(p, format="png", dpi=100))
    written = {**manifest, "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    # Last: a day whose manifest names its builds has its CSV and chart of those builds.
    _replace(paths["json"], lambda p: p.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n"))
    return "written"


def write_reports(settings: Settings, days: Sequence[date], metrics: Sequence[str] = ()) -> ReportRun:
    """Report every complete day of ``days`` not reported yet on its current builds."""
    from cache.client import connect
    from cache.keys import KeyLayout
    from tally.core.spec import load_spec

    spec = load_spec(settings.spec_path)
    names = report_metrics(spec, metrics)
    outcome: dict[str, list[str]] = {"written": [], "unchanged": [], "incomplete": []}
    client = connect(settings.redis_url)
    try:
        layout = KeyLayout(settings.redis_prefix)
        for day in sorted(set(days)):
            result = write_day_report(settings, spec, client, layout, day, names)
            outcome[result].append(day.isoformat())
            log.info("daily report %s: %s", day.isoformat(), result)
    finally:
        client.close()
    return ReportRun(**outcome)


def report_events(
    extras: Sequence[Mapping[str, Any]], metrics: Sequence[str] = (), *, triggered: bool = True
) -> dict[str, list[str]]:
    """What ``tally_daily_report`` runs: report the complete days the asset events' hours fall in.

    ``triggered``: the events are the run's triggering ones (else a manual run's look at the latest).
    """
    from dataclasses import asdict

    from tally.core.settings import get_settings

    settings = get_settings()
    days = days_in_events(extras, settings.redis_prefix)
    kind = "triggering" if triggered else "latest (a manual run)"
    log.info("%d %s asset event(s), naming day(s) %s", len(extras), kind, [d.isoformat() for d in days])
    return asdict(write_reports(settings, days, metrics))
