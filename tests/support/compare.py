"""Comparing the tables two runs of the job wrote (rollups, statistics), where the engine may differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from tally.core.layout import ROLLUPS_STATS
from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import Kind, load_spec

SLICE_COLUMNS = ["dt", "hour", "metric", "event_type", "country", "platform"]


def read_table(folder: Path, sort_by: list[str]) -> pd.DataFrame:
    frame = pq.read_table(folder).to_pandas()
    # Partition columns come back as categoricals; plain values compare across runs.
    frame["dt"] = frame["dt"].astype(str)
    frame["hour"] = frame["hour"].astype(int)
    return frame.sort_values(sort_by, na_position="first").reset_index(drop=True)


def read_stats(data_dir: Path) -> pd.DataFrame:
    stats = read_table(data_dir / ROLLUPS_STATS, ["dt", "hour"])
    # When and how fast are properties of the run, not of the result.
    stats = stats.drop(columns=["computed_at", "application_seconds"])
    stats["invalid_by_reason"] = stats["invalid_by_reason"].map(lambda pairs: dict(sorted(pairs)))
    return stats


def assert_same_rollups(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same slices; counts and distinct-count estimates exactly, sums to the last bits.

    A double sum depends on the order Spark adds the partial sums in, which follows
    the partitioning (one executor core here, two local cores), so the last bits may
    differ. HLL sketches unioned in a different order hold the same registers but not
    the same bytes (the serialized image keeps merge-order state), so they are compared
    by their estimates, which are the ``value`` of distinct-count rows.
    """
    sums = {m.name for m in load_spec(DEFAULT_SPEC_PATH).stored if m.kind is Kind.SUM}
    pd.testing.assert_frame_equal(got[SLICE_COLUMNS], expected[SLICE_COLUMNS])
    is_sum = got["metric"].isin(sums)
    assert is_sum.any() and (~is_sum).any()
    pd.testing.assert_series_equal(got["value"][~is_sum], expected["value"][~is_sum], check_exact=True)
    pd.testing.assert_series_equal(got["value"][is_sum], expected["value"][is_sum], check_exact=False, rtol=1e-12)
    pd.testing.assert_series_equal(got["sketch"].isna(), expected["sketch"].isna())
