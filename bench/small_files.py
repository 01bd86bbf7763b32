"""P9: one hour as many small files (as streaming sinks write it) vs the same rows in a few files.

Issue 18 item 4. A generated hour (:func:`tally.app.generate.hour_tables`, main and late
rows together) is split with pyarrow into ``MANY_FILES`` and into ``FEW_FILES`` files of
consecutive rows, so both folders hold identical rows; each is computed by the real job
(:func:`jobs.hourly.run_hours`, in the suite's warm session), alternately, ``REPS`` times.
The two rollups must agree: sums to the last digits, sketch estimates within their
error (an estimate depends on the order rows arrive in). Beside the job's wall time, the
driver-side planning (:func:`jobs.hourly.plan_inputs`: listing, footer checks) and the
input fingerprint (:func:`tally.core.layout.input_fingerprint`) are timed alone, so what
the extra files cost on the driver and what they cost inside Spark can be told apart.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tally.app.generate import hour_tables, make_population
from tally.core.layout import input_fingerprint, raw_hour_dir, raw_parquet_files, rollup_hour_dir
from tally.core.rollup import SKETCH, VALUE
from tally.core.spec import MetricSpec
from tally.core.spec_model import SKETCH_MERGES

if TYPE_CHECKING:
    from bench.suite import Bench, Figure

HOUR = datetime(2026, 11, 3, 14, tzinfo=UTC)
EVENTS_PER_HOUR = 100_000
SEED = 9
MANY_FILES, FEW_FILES = 2_000, 4
TARGET = 1.5
# The same rows give the same rollup: sums to the last digits, sketch estimates within their
# error (P5's 3%; in practice a few in a thousand).
EXACT_TOLERANCE, SKETCH_TOLERANCE = 1e-9, 0.03


def write_split(table: pa.Table, folder: Path, files: int) -> None:
    """``table``'s rows, in order, as ``files`` Parquet files of consecutive rows."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [round(i * table.num_rows / files) for i in range(files + 1)]
    for index, (start, stop) in enumerate(pairwise(bounds)):
        pq.write_table(table.slice(start, stop - start), folder / f"part-{index:05d}.parquet")


def hour_rows() -> pa.Table:
    """The generated hour's rows: the main file's, then the late duplicates'."""
    main, late = hour_tables(make_population(SEED, EVENTS_PER_HOUR), HOUR, EVENTS_PER_HOUR, SEED)
    return pa.concat_tables([main, late])


def rollup_values(data_dir: Path) -> dict[tuple[object, ...], float]:
    """The hour's rollup values by (metric, dimension values)."""
    frame = pd.read_parquet(rollup_hour_dir(data_dir, HOUR)).drop(columns=SKETCH)
    keys = [c for c in frame.columns if c != VALUE]
    return {tuple(row[k] for k in keys): float(row[VALUE]) for row in frame.astype(object).to_dict("records")}


def largest_differences(spec: MetricSpec, got: dict, expected: dict) -> dict[str, float]:
    """The largest relative difference of a value, by merge family, between two rollups of the same rows.

    Sums may add in another order (the last digits), and a sketch's estimate depends on the
    order its rows arrived in (cache/builds.py, ``build_id``): only those differ at all.
    """
    if got.keys() != expected.keys():
        raise RuntimeError(f"P9: the rollups have different slices ({len(got)} vs {len(expected)} rows)")
    merges = {m.name: m.merge for m in spec.stored}
    largest: dict[str, float] = {}
    for key, value in got.items():
        family = "sketch" if merges[str(key[0])] in SKETCH_MERGES else "exact"
        difference = abs(value - expected[key]) / max(abs(expected[key]), 1e-300)
        largest[family] = max(largest.get(family, 0.0), difference)
    return largest


def p9_small_files(b: Bench) -> Figure:
    from bench.suite import REPS, WORK, Figure, at_most, timed
    from jobs.hourly import RunReport, plan_inputs

    folders = {MANY_FILES: WORK / "p9-many", FEW_FILES: WORK / "p9-few"}
    table = hour_rows()
    print(f"  splitting one hour of {table.num_rows:,} rows into {MANY_FILES:,} and {FEW_FILES} files ...", flush=True)
    for files, folder in folders.items():
        write_split(table, raw_hour_dir(folder, HOUR), files)
    b.run_job(folders[FEW_FILES], [HOUR])  # warm-up: the first job of a fresh session is slower
    job: dict[int, list[float]] = {files: [] for files in folders}
    plan: dict[int, list[float]] = {files: [] for files in folders}
    fingerprint: dict[int, list[float]] = {files: [] for files in folders}
    for _ in range(REPS):  # alternate, so drift hits both equally
        for files, folder in folders.items():
            job[files].append(round(timed(lambda folder=folder: b.run_job(folder, [HOUR])), 3))
            plan[files].append(round(timed(lambda folder=folder: plan_inputs(folder, b.spec, [HOUR], RunReport())), 3))
            paths = raw_parquet_files(folder, HOUR)
            fingerprint[files].append(round(timed(lambda paths=paths: input_fingerprint(paths)), 4))
    many = rollup_values(folders[MANY_FILES])
    differences = largest_differences(b.spec, many, rollup_values(folders[FEW_FILES]))
    if differences.get("exact", 0.0) > EXACT_TOLERANCE or differences.get("sketch", 0.0) > SKETCH_TOLERANCE:
        raise RuntimeError(f"P9: the rollup of {MANY_FILES} files differs from that of {FEW_FILES}: {differences}")
    seconds = {files: statistics.median(samples) for files, samples in job.items()}
    ratio = seconds[MANY_FILES] / seconds[FEW_FILES]
    met, headroom = at_most(ratio, TARGET)
    planning = {files: statistics.median(samples) for files, samples in plan.items()}
    return Figure(
        "P9",
        f"the job on one hour of {table.num_rows:,} rows as {MANY_FILES:,} files vs the same rows in {FEW_FILES} files",
        f"{seconds[MANY_FILES]:.2f} s ({planning[MANY_FILES]:.2f} s planning)",
        f"{seconds[FEW_FILES]:.2f} s ({planning[FEW_FILES]:.2f} s planning)",
        ratio,
        f"<= {TARGET}x",
        met,
        headroom,
        {
            "rows": table.num_rows,
            "job_samples_s": {str(k): v for k, v in job.items()},
            "plan_inputs_samples_s": {str(k): v for k, v in plan.items()},
            "input_fingerprint_samples_s": {str(k): v for k, v in fingerprint.items()},
            "rollup_rows": len(many),
            "largest_relative_difference": differences,
        },
    )
