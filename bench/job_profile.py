"""Where the hourly Spark job's time goes on a 1M-event hour (the profile behind P1).

    python -m bench.job_profile

Runs each stage of ``jobs.batch.run_batch`` on its own, in a warm session
(after one full run), three times, and prints the median of each next to the
DuckDB peer's whole job on the same files. Spark's ``noop`` sink forces a stage
to compute every row without writing anything.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import peers
from bench.server import ROOT
from jobs.hourly import RunReport, plan_inputs, run_planned
from jobs.session import build_session
from jobs.source import read_hours
from jobs.tables import overwrite_partitions, read_quarantine, write_quarantine
from jobs.transform import (
    counted_events,
    deduplicate,
    finest_slices,
    hour_stats,
    rollup_from_finest,
    valid_events,
    with_hour_placeholders,
    with_invalid_reason,
)
from tally.app.generate import generate_hours
from tally.core.layout import raw_parquet_files
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import load_spec

WORK = ROOT / ".tally" / "bench-profile"
HOUR = datetime(2026, 11, 2, 10, tzinfo=UTC)


def median_seconds(action: Callable[[], Any], reps: int = 3) -> float:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    spec = load_spec(DEFAULT_SPEC_PATH)
    rows = generate_hours(WORK, [HOUR], 1_000_000, seed=1).rows
    spark = build_session("local[2]", app_name="tally-profile")
    try:
        plans = plan_inputs(WORK, spec, [HOUR], RunReport())
        source = spec.source("events")
        inputs = [p.inputs[source.name] for p in plans]
        out = WORK / "out"

        def noop(frame: Any) -> None:
            frame.write.format("noop").mode("overwrite").save()

        def classified() -> Any:
            return with_invalid_reason(read_hours(spark, source, inputs), source)

        def finest() -> Any:
            events = with_hour_placeholders(deduplicate(valid_events(classified(), source, spec), source), [HOUR])
            return finest_slices(events, spec, source)

        run_planned(spark, WORK, spec, plans, RunReport())  # warm-up: JIT, codegen
        cached = finest().persist()
        cached.count()
        stages = {
            "whole job (tally run's work)": lambda: run_planned(spark, WORK, spec, plans, RunReport()),
            "read + classify every row": lambda: noop(classified()),
            "... + keep valid rows": lambda: noop(valid_events(classified(), source, spec)),
            "... + de-duplicate (shuffle + sort)": lambda: noop(
                deduplicate(valid_events(classified(), source, spec), source)
            ),
            "... + finest slices (counts, sums, sketches)": lambda: noop(finest()),
            "rollup from cached finest slices + write": lambda: overwrite_partitions(
                rollup_from_finest(cached, spec, source), out / "rollup"
            ),
            "quarantine write": lambda: write_quarantine(spark, out, source, classified(), [HOUR]),
            # As the job does: from the quarantine just written, not from a scan of the input.
            "run statistics": lambda: hour_stats(
                read_quarantine(spark, out, source, [HOUR]), [HOUR], {HOUR: rows}, counted_events(cached), source
            ).collect(),
        }
        print(f"{rows:,} rows in one hour; median of 3 in a warm session (local[2])")
        for name, action in stages.items():
            print(f"  {name:<46}{median_seconds(action):>7.2f} s", flush=True)
        cached.unpersist()
    finally:
        spark.stop()
    con = peers.connect()
    files = raw_parquet_files(WORK, HOUR)
    duck = median_seconds(lambda: peers.run_rollup(con, spec, files, WORK / "duckdb.parquet"))
    print(f"  {'DuckDB, the same rollup (P1 peer)':<46}{duck:>7.2f} s")
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
