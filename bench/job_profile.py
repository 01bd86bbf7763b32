"""Where the hourly Spark job's time goes on a 1M-event hour (the profile behind P1).

    python -m bench.job_profile

In a warm session (after one full run), three times each, median printed:

1. The whole job (``jobs.hourly.run_planned``) and its phases as the job itself times
   them (:class:`jobs.batch.Laps`, logged by every run): the finest slices (read,
   classify, de-duplicate, aggregate, computed once and kept), the rollup from them
   and its write, the quarantine, the statistics.
2. The finest slices' steps on their own, each a prefix of the job's plan run into
   Spark's ``noop`` sink (every row computed, nothing written), so each line minus
   the one above is what its step adds.

Then the DuckDB peer's whole job on the same files (P1's peer).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import peers
from bench.server import ROOT
from jobs.batch import Laps
from jobs.hourly import RunReport, plan_inputs, run_planned
from jobs.session import build_session
from jobs.source import read_hours
from jobs.transform import (
    deduplicate,
    finest_slices,
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


class _JobLaps(logging.Handler):
    """Collects the phases of each job run from the job's own log record (:class:`jobs.batch.Laps`)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        laps = record.args[-1] if isinstance(record.args, tuple) and record.args else None
        if isinstance(laps, Laps):
            self.runs.append(dict(laps.seconds))


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    spec = load_spec(DEFAULT_SPEC_PATH)
    rows = generate_hours(WORK, [HOUR], 1_000_000, seed=1).rows
    spark = build_session("local[2]", app_name="tally-profile")
    try:
        plans = plan_inputs(WORK, spec, [HOUR], RunReport())
        source = spec.source("events")
        inputs = [p.inputs[source.name] for p in plans]

        def noop(frame: Any) -> None:
            frame.write.format("noop").mode("overwrite").save()

        def classified() -> Any:
            return with_invalid_reason(read_hours(spark, source, inputs), source)

        def finest() -> Any:
            events = with_hour_placeholders(deduplicate(valid_events(classified(), source, spec), source), [HOUR])
            return finest_slices(events, spec, source)

        run_planned(spark, WORK, spec, plans, RunReport())  # warm-up: JIT, codegen
        laps = _JobLaps()
        logging.getLogger("jobs.batch").addHandler(laps)
        logging.getLogger("jobs.batch").setLevel(logging.INFO)
        whole = median_seconds(lambda: run_planned(spark, WORK, spec, plans, RunReport()))
        print(f"{rows:,} rows in one hour; median of 3 in a warm session (local[2])")
        print(f"  {'whole job (after the footer checks)':<46}{whole:>7.2f} s")
        for phase in laps.runs[0]:
            print(f"    {phase:<44}{statistics.median(run[phase] for run in laps.runs):>7.2f} s")
        steps = {
            "read + classify every row": lambda: noop(classified()),
            "... + keep valid rows": lambda: noop(valid_events(classified(), source, spec)),
            "... + de-duplicate (shuffle + sort)": lambda: noop(
                deduplicate(valid_events(classified(), source, spec), source)
            ),
            "... + finest slices (counts, sums, sketches)": lambda: noop(finest()),
        }
        print("  the finest slices' steps, each on its own:")
        for name, action in steps.items():
            print(f"    {name:<44}{median_seconds(action):>7.2f} s", flush=True)
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
