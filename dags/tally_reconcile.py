"""
### tally_reconcile

Daily, for the last `TALLY_RECONCILE_HORIZON_DAYS` (default 35) days: finds every
computed hour whose input changed since it was built (late, rewritten or removed
files, detected by a fingerprint of file names, sizes and modification times),
recomputes exactly those hours in one Spark application, and publishes them in
one verified, atomic switch. No fixed "frozen after N days" window: anything
inside the horizon that changes is rebuilt. `tally_hourly` does the same for the
last 72 hours on every run.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, task

DEFAULT_ARGS = {
    "owner": "tally",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
}

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

    @task(task_id="recompute_changed")
    def recompute_changed(data_interval_end=None) -> list[str]:
        from jobs.hourly import changed_hours, compute_hours
        from tally.layout import format_hour, hours_between
        from tally.settings import get_settings

        settings = get_settings()
        end = data_interval_end
        window = list(hours_between(end - timedelta(days=settings.reconcile_horizon_days), end))
        changed = changed_hours(settings.data_dir, window)
        print(f"{len(changed)} hour(s) changed since they were built: {[format_hour(h) for h in changed]}")
        if not changed:
            return []
        report = compute_hours(settings, changed, app_name="tally_reconcile")
        if report.failed:
            raise RuntimeError("; ".join(f"{h}: {why}" for h, why in report.failed.items()))
        return [format_hour(h) for h in report.computed_hours]

    @task(task_id="publish")
    def publish(hours: list[str]) -> dict:
        from cache.publish import publish_hour_texts

        return publish_hour_texts(hours)

    publish(recompute_changed())
