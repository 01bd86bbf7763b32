"""
### tally_hourly

Every hour, for exactly the hour of its **data interval** (UTC):

1. **find_stale** (no Spark): looks back over the previous
   `TALLY_LATE_DATA_HORIZON_HOURS` (default 72) hours for hours whose input
   changed since they were built (late or rewritten files in any source,
   found by a fingerprint of file names, sizes and modification times), hours
   built under an older definition of a metric, and for rollups
   that were written but never published (a publish that failed). It marks them
   pending in Redis, so the API reports their points `complete: false` until
   this run's publish.
2. **wait_for_input**: waits (reschedule mode: no worker slot held) for the
   hour's folder of every source of the spec (its `path`, e.g.
   `raw/events/dt=YYYY-MM-DD/hour=HH` under `TALLY_DATA_DIR`). If one has not
   appeared `TALLY_INPUT_WAIT_HOURS` (default 6) after the hour ended, the task
   fails naming the source and its folder. Nothing is published for an hour
   that never arrived.
3. **aggregate**: one Spark application computes every metric and slice of
   every source of the hour (one scan per source), and of the changed hours,
   and overwrites their durable rollups (and quarantine, and run statistics).
   Reruns give the same result.
4. **publish**: verifies the builds and makes them live in Redis in one atomic
   switch (every source of an hour together), with the unpublished rollups
   found in step 1, and announces the hours it made live as an event on the
   Airflow asset `tally://<TALLY_REDIS_PREFIX>/metrics` (none when nothing
   changed); `tally_daily_report` and your own DAGs can schedule on it.
5. **check_late_input**: fails the run, naming the files, if a changed earlier
   hour could not be recomputed (its input is now broken). That hour keeps its
   previous build and stays pending; the run's own hour is published anyway.

Tasks retry 3 times with exponential backoff, starting from Airflow's
`[core] default_task_retry_delay` (the local stack sets 60 s). `catchup` is off: enabling the DAG
starts at the current hour. To fill history, trigger **tally_recompute** with a
range (one Spark application) or run `tally backfill`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, AssetAlias, CronDataIntervalTimetable, task

DEFAULT_ARGS = {
    "owner": "tally",
    "retries": 3,
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}

# The publish task's outlet: it attaches the asset tally://<TALLY_REDIS_PREFIX>/metrics with the
# published hours as the event's extra, and emits nothing when nothing changed (tally.app.assets).
TALLY_METRICS = AssetAlias("tally-metrics")

with DAG(
    dag_id="tally_hourly",
    # Airflow 3's plain cron schedule has no data interval; this timetable gives
    # each run [hour, hour + 1h), which is exactly what the run processes.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["tally", "metrics", "hourly"],
) as dag:

    @task.sensor(task_id="wait_for_input", poke_interval=120, timeout=12 * 3600, mode="reschedule")
    def wait_for_input(data_interval_start=None, data_interval_end=None) -> bool:
        from airflow.sdk.exceptions import AirflowFailException

        from tally.app.pipeline import missing_inputs
        from tally.core.layout import format_hour
        from tally.core.settings import get_settings

        settings = get_settings()
        missing = missing_inputs(settings, data_interval_start)
        if not missing:
            return True
        folders = "; ".join(f"source {name!r}: {folder} does not exist" for name, folder in missing)
        waited = pendulum.now("UTC") - data_interval_end
        if waited > timedelta(hours=settings.input_wait_hours):
            raise AirflowFailException(
                f"raw events for {format_hour(data_interval_start)} never arrived: {folders} "
                f"{waited.total_seconds() / 3600:.1f} h after the hour ended "
                f"(limit TALLY_INPUT_WAIT_HOURS={settings.input_wait_hours})"
            )
        print(f"waiting for {folders}")
        return False

    @task(task_id="find_stale")
    def find_stale(data_interval_start=None) -> dict:
        from tally.app.pipeline import find_stale, lookback
        from tally.core.settings import get_settings

        settings = get_settings()
        window = lookback(data_interval_start, settings.late_data_horizon_hours)
        return find_stale(settings, window).to_xcom()

    @task(task_id="aggregate")
    def aggregate(stale: dict, data_interval_start=None) -> dict:
        from dataclasses import asdict

        from tally.app.pipeline import Stale, compute
        from tally.core.settings import get_settings

        computed = compute(get_settings(), [data_interval_start], Stale.from_xcom(stale), app_name="tally_hourly")
        return asdict(computed)

    @task(task_id="publish", outlets=[TALLY_METRICS])
    def publish(computed: dict, outlet_events=None) -> dict:
        from tally.app.assets import announce_publish
        from tally.app.pipeline import publish_hour_texts

        published = publish_hour_texts(computed["publish"])
        announce_publish(outlet_events[TALLY_METRICS], published)
        return published

    @task(task_id="check_late_input", retries=0)
    def check_late_input(computed: dict) -> None:
        from tally.app.pipeline import late_input_problems

        if problem := late_input_problems(computed["failed"]):
            raise RuntimeError(problem)

    computed = aggregate(find_stale())
    wait_for_input() >> computed
    publish(computed) >> check_late_input(computed)
