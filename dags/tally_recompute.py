"""
### tally_recompute

Recomputes and republishes every hour in **[start, end)** (UTC) in one Spark
application. Trigger it from the Airflow UI ("Trigger DAG" → fill *start* and
*end*), or `airflow dags trigger tally_recompute -c '{"start": "...", "end": "..."}'`.

The form opens on the last full UTC day. Its defaults are computed when Airflow
parses this file (every few minutes), which is as close to "when the form is
rendered" as Airflow's Params allow: type any other range.

Hours whose input folder does not exist are skipped (and listed in the log);
when none of the range's hours has arrived the run fails, naming the folders.
An hour with a broken input file fails the run after the other hours are
written, naming the file. Only computed hours are published, in one atomic
switch, and the hours whose numbers changed are announced on the asset
`tally://<TALLY_REDIS_PREFIX>/metrics` (revised ones named).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

# The last full UTC day, as of this parse (pendulum only: DAG files stay light to parse).
_TODAY = pendulum.now("UTC").start_of("day")
_DEFAULT_START, _DEFAULT_END = _TODAY.subtract(days=1).isoformat(), _TODAY.isoformat()

DEFAULT_ARGS = {
    "owner": "tally",
    "retries": 1,
    "retry_exponential_backoff": True,
}

# The publish task's outlet: it attaches the asset tally://<TALLY_REDIS_PREFIX>/metrics with the
# published hours as the event's extra, and emits nothing when nothing changed (tally.app.assets).
TALLY_METRICS = AssetAlias("tally-metrics")

with DAG(
    dag_id="tally_recompute",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["tally", "metrics", "backfill"],
    params={
        "start": Param(
            _DEFAULT_START,
            type="string",
            format="date-time",
            title="Start (inclusive, UTC)",
            description="First hour to recompute.",
        ),
        "end": Param(
            _DEFAULT_END,
            type="string",
            format="date-time",
            title="End (exclusive, UTC)",
            description="The hour after the last one to recompute.",
        ),
    },
) as dag:

    @task(task_id="aggregate_range")
    def aggregate_range(params=None) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        from tally.app.pipeline import recompute_range
        from tally.core.layout import HourNotArrivedError
        from tally.core.settings import get_settings

        try:
            return recompute_range(get_settings(), params["start"], params["end"], app_name="tally_recompute")
        except HourNotArrivedError as exc:  # a retry finds the same folders missing
            raise AirflowFailException(str(exc)) from None

    @task(task_id="publish_range", outlets=[TALLY_METRICS])
    def publish_range(hours: list[str], outlet_events=None) -> dict:
        from tally.app.assets import announce_publish
        from tally.app.pipeline import publish_hour_texts

        published = publish_hour_texts(hours)
        announce_publish(outlet_events[TALLY_METRICS], published)
        return published

    publish_range(aggregate_range())
