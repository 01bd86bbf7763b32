"""``spark-submit`` entry point: compute (and optionally publish) the hours in [start, end).

    spark-submit --master spark://host:7077 tally/app/submit.py --start 2026-11-27T00:00Z --end 2026-11-28T00:00Z

The driver needs Tally installed (it imports ``tally``, ``jobs`` and ``cache``);
executors need nothing beyond Spark (no Python): the job uses only built-in Spark
SQL functions, and its small driver-side frames travel as Arrow
(``jobs.source.local_frame``). The master comes from spark-submit; settings
(``TALLY_DATA_DIR``, ``REDIS_URL`` ...) from the environment as everywhere else.
"""

from __future__ import annotations

import argparse
import json
import sys

from tally.core.layout import parse_range_hours
from tally.core.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally/app/submit.py", description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--publish", action="store_true", help="publish the computed hours to Redis")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    from jobs.hourly import run_hours
    from jobs.session import BASE_CONF
    from jobs.spec_check import require_valid_sql
    from tally.core.spec import load_spec

    settings = get_settings()
    spec = load_spec(settings.spec_path)  # a broken spec fails before Spark starts
    hours = parse_range_hours(args.start, args.end, max_hours=24 * 400)
    builder = SparkSession.builder.appName("tally")
    for key, value in BASE_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()  # master and resources come from spark-submit
    try:
        require_valid_sql(spark, spec, settings.spec_path)  # before reading any data
        report = run_hours(spark, settings.data_dir, spec, hours)
    finally:
        spark.stop()
    print(json.dumps({"computed": sorted(report.computed), "missing": report.missing, "failed": report.failed}))
    if args.publish and report.computed_hours:
        from tally.app.pipeline import publish_settings_hours

        publish_settings_hours(settings, report.computed_hours)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
