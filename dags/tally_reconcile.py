"""
### tally_reconcile

Daily, for the last `TALLY_RECONCILE_HORIZON_DAYS` (default 35) days:

1. **find_stale** (no Spark): finds every computed hour whose input changed
   since it was built (late, rewritten or removed files, detected by a
   fingerprint of file names, sizes and modification times), and every rollup
   that was written but never published, and marks them pending in Redis.
2. **recompute_changed**: recomputes exactly the changed hours in one Spark
   application (skipped when there are none).
3. **publish**: publishes them, and the unpublished rollups, in one verified,
   atomic switch, and announces them (revised hours named) on the asset
   `tally://<TALLY_REDIS_PREFIX>/metrics`; nothing changed, no event.
4. **check_late_input**: fails the run, naming the files, for a changed hour
   whose input is now broken; it keeps its previous build and stays pending.
5. **compact_rollups** (no Spark; runs whatever the check found): deletes the
   durable rollups of days past `TALLY_ROLLUP_RETENTION_DAYS` (0 = kept), then
   folds the hourly partitions of days that ended `TALLY_COMPACT_AFTER_DAYS`
   (default 7; 0 = off) before the run's end into one file per day. Every
   reader reads both forms, and an hour recomputed later wins over its day file.

No fixed "frozen after N days" window: anything inside the horizon that changes
is rebuilt. `tally_hourly` does the same for the last 72 hours on every run.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, AssetAlias, CronDataIntervalTimetable, task

DEFAULT_ARGS = {
    "owner": "tally",
    "retries": 2,
    "retry_exponential_backoff": True,
}

# The publish task's outlet: it attaches the asset tally://<TALLY_REDIS_PREFIX>/metrics with the
# published hours as the event's extra, and emits nothing when nothing changed (tally.app.assets).
TALLY_METRICS = AssetAlias("tally-metrics")

with DAG(
    dag_id="tally_reconcile",
    schedule=CronDataIntervalTimetable("30 3 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["tally", "metrics", "late-data"],
) as dag:

    @task(task_id="find_stale")
    def find_stale(data_interval_end=None) -> dict:
        from tally.app.pipeline import find_stale
        from tally.core.layout import hours_between
        from tally.core.settings import get_settings

        settings = get_settings()
        end = data_interval_end
        window = list(hours_between(end - timedelta(days=settings.reconcile_horizon_days), end))
        return find_stale(settings, window).to_xcom()

    @task(task_id="recompute_changed")
    def recompute_changed(stale: dict) -> dict:
        from dataclasses import asdict

        from tally.app.pipeline import Computed, Stale, compute
        from tally.core.settings import get_settings

        stale_hours = Stale.from_xcom(stale)
        if not stale_hours.recompute:  # nothing for Spark to do: do not start it
            return asdict(Computed(publish=stale["republish"], failed={}))
        return asdict(compute(get_settings(), [], stale_hours, app_name="tally_reconcile"))

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

    # all_done: the late-input check fails on purpose; the durable store is tidied all the same.
    @task(task_id="compact_rollups", trigger_rule="all_done")
    def compact_rollups(data_interval_end=None) -> dict:
        from tally.app.pipeline import compact_rollups
        from tally.core.settings import get_settings

        upkeep = compact_rollups(get_settings(), now=data_interval_end)
        return {"expired": [str(d) for d in upkeep.expired], "compacted": [str(c.day) for c in upkeep.compacted]}

    computed = recompute_changed(find_stale())
    publish(computed) >> check_late_input(computed) >> compact_rollups()
