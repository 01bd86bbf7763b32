"""
### tally_daily_report

An example of a DAG scheduled on Tally's data. It runs whenever a publishing
task (`tally_hourly`, `tally_recompute`, `tally_reconcile`) announces hours on
the asset `tally://<TALLY_REDIS_PREFIX>/metrics`, and for every UTC day those
hours fall in that is **complete** (each of its 24 hours has a published
build) writes a report under `TALLY_DATA_DIR/reports/`:

- `<day>.csv`: the day's hourly values (what `GET /v1/metrics/<name>?grain=hour`
  serves) of the dashboard's card metrics, or of the `metrics` param;
- `<day>.png`: a chart of them;
- `<day>.json`: the builds the report was made from.

A day is written once, and again only when one of its hours was revised (its
builds changed). A manual run (no triggering events) looks at the asset's latest
events instead. The logic is `tally.app.reports`; this file only wires it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

DEFAULT_ARGS = {
    "owner": "tally",
    "retries": 2,
    "retry_exponential_backoff": True,
}

# What the publishing DAGs' publish tasks emit through (tally.app.assets); scheduling on the
# alias follows the asset of whichever prefix is configured, which this file cannot read at parse time.
TALLY_METRICS = AssetAlias("tally-metrics")
# A manual run reconsiders the days of this many of the latest events.
MANUAL_RUN_EVENTS = 48

with DAG(
    dag_id="tally_daily_report",
    schedule=[TALLY_METRICS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["tally", "reports", "example"],
    params={
        "metrics": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Metrics",
            description="Metrics in the report (default: the dashboard's cards).",
        ),
    },
) as dag:

    @task(task_id="write_reports", inlets=[TALLY_METRICS])
    def write_reports(triggering_asset_events=None, inlet_events=None, params=None) -> dict:
        from tally.app.reports import report_events

        triggering = list(triggering_asset_events.get(TALLY_METRICS, []))
        # Triggered by hand (no triggering events): the latest announcements instead.
        events = triggering or list(inlet_events[TALLY_METRICS].ascending(False).limit(MANUAL_RUN_EVENTS))
        return report_events([event.extra for event in events], params["metrics"], triggered=bool(triggering))

    write_reports()
