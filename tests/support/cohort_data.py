"""A members-and-actions table of our own for the sketch-native metrics, and its exact answers in pandas.

The ``app`` source differs from the sample table in every way the contract allows
here: epoch milliseconds, another folder layout, an id column named ``evt``, an
SQL dimension, integer cents, a quantile over an expression, a min through
``where``. Three weeks of data (2026-10-26 to 2026-11-15) span the end of daylight
saving time in America/New_York (2026-11-01), in four UTC hours a day that fall
on both sides of New York's midnight (04:00 UTC in EDT, 05:00 UTC in EST).

The reference reads the raw files back and computes quantile ranks, extremes and
set intersections directly: it shares no code with the job or the API.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FIRST_DAY = date(2026, 10, 26)  # a Monday: weeks start there in New York and in UTC
DAYS = 21
UTC_HOURS = (3, 4, 5, 16)
HOURS = [
    datetime(d.year, d.month, d.day, h, tzinfo=UTC)
    for d in (FIRST_DAY + timedelta(days=i) for i in range(DAYS))
    for h in UTC_HOURS
]
POPULATION = 6000
REGIONS = ("North", "south ", "EAST")  # lower(trim(region_code)) makes north, south, east
NEW_YORK = ZoneInfo("America/New_York")


def _metric(name: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": f"{name}.", "unit": "x", "kind": kind, "dimensions": ["region"], **fields}


SPEC: dict[str, Any] = {
    "sketch_lg_k": 12,
    "sources": {
        "app": {
            "path": "feed/app/{YYYY}{MM}{DD}/h{HH}",
            "time": {"column": "ts_ms", "unit": "ms"},
            "id": "evt",
            "columns": {
                "evt": "string",
                "ts_ms": "long",
                "member": "string",
                "act": "string",
                "cents": "long",
                "latency": "double",
                "region_code": "string",
            },
            "required": ["member", "act"],
            "dimensions": {"region": {"expr": "lower(trim(region_code))"}},
        }
    },
    "metrics": [
        _metric("pay_value", "quantile", field="cents / 100.0", q=0.9, kll_k=400, where="act = 'pay'"),
        # Every event, with the default k=200: hours already hold more values than the sketch keeps.
        _metric("latency_p", "quantile", field="latency"),
        _metric("cheapest", "min", field="cents", where="act = 'pay'"),
        _metric("priciest", "max", field="cents / 100.0", where="act = 'pay'"),
        _metric("joiners", "count_distinct", field="member", sketch="theta", where="act = 'join'"),
        _metric("members", "count_distinct", field="member", sketch="theta"),
        _metric("browsers", "count_distinct", field="member", sketch="theta", where="act = 'browse'"),
        _metric("basketers", "count_distinct", field="member", sketch="theta", where="act = 'basket'"),
        _metric("payers", "count_distinct", field="member", sketch="theta", where="act = 'pay'"),
        # Estimation mode on purpose (64 nominal entries): its bounds must still hold.
        _metric("members_small", "count_distinct", field="member", sketch="theta", lg_nom_entries=6),
        _metric("members_hll", "count_distinct", field="member"),
        _metric("visits", "count_distinct", field="evt", sketch="theta"),  # another id space
        {
            "name": "spread",
            "description": "Largest payment over the 90th percentile.",
            "unit": "ratio",
            "kind": "ratio",
            "numerator": "priciest",
            "denominator": "pay_value",
            "dimensions": ["region"],
        },
    ],
}


def write_tables(data_dir: Path, seed: int = 16) -> None:
    """Every hour of :data:`HOURS`: members join over the first two weeks and come back less and less."""
    rng = np.random.default_rng(seed)
    join_hour = rng.integers(0, len(HOURS) * 2 // 3, POPULATION)
    region = rng.choice(REGIONS, POPULATION)
    for index, hour in enumerate(HOURS):
        rows: list[dict[str, Any]] = []
        joined = np.flatnonzero(join_hour <= index)
        age = index - join_hour[joined]
        active = joined[rng.random(len(joined)) < 0.05 + 0.25 * np.exp(-age / 10)]
        for member in active:
            acts = ["join"] if join_hour[member] == index else []
            acts += ["open"] + [a for a, p in (("browse", 0.7), ("basket", 0.35), ("pay", 0.2)) if rng.random() < p]
            for act in acts:
                rows.append(
                    {
                        "evt": f"e{index}-{member}-{act}",
                        "ts_ms": int(hour.timestamp() * 1000) + int(rng.integers(0, 3_600_000)),
                        "member": f"m{member}",
                        "act": act,
                        "cents": int(rng.lognormal(7.5, 0.9)) if act == "pay" else None,
                        "latency": float(rng.gamma(2.0, 40.0)),
                        "region_code": str(region[member]),
                    }
                )
        frame = pd.DataFrame(rows)
        frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # redelivered copies count once
        folder = data_dir / f"feed/app/{hour:%Y%m%d}/h{hour:%H}"
        folder.mkdir(parents=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.set_column(4, "cents", table.column("cents").cast(pa.int64())), folder / "part-0.parquet")


def events(data_dir: Path) -> pd.DataFrame:
    """The valid, de-duplicated rows, with the UTC hour and region as the spec defines them."""
    frames = [pd.read_parquet(path) for path in sorted((data_dir / "feed/app").glob("*/h*/*.parquet"))]
    rows = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["evt"])
    rows = rows[rows["member"].notna() & (rows["member"] != "") & rows["act"].notna() & (rows["act"] != "")]
    rows = rows.assign(
        at=pd.to_datetime(rows["ts_ms"], unit="ms", utc=True),
        region=rows["region_code"].str.strip().str.lower(),
    )
    return rows.assign(hour=rows["at"].dt.floor("h"))


def bucket_start(instants: pd.Series, grain: str, tz: ZoneInfo) -> pd.Series:
    """The start (in UTC) of the grain's bucket in ``tz`` holding each instant: local midnights, Mondays."""
    if grain == "hour":
        return instants.dt.floor("h")
    local_days = instants.dt.tz_convert(tz.key).dt.date
    if grain == "week":
        local_days = local_days.map(lambda d: d - timedelta(days=d.weekday()))
    return local_days.map(lambda d: pd.Timestamp(datetime(d.year, d.month, d.day), tz=tz.key).tz_convert("UTC"))


def id_sets(rows: pd.DataFrame, grain: str, tz: ZoneInfo) -> dict[pd.Timestamp, set[str]]:
    """Bucket start -> the members in ``rows`` during it."""
    starts = bucket_start(rows["at"], grain, tz)
    return {start: set(group) for start, group in rows["member"].groupby(starts)}


def rank_bounds(values: np.ndarray, answer: float) -> tuple[float, float]:
    """The exact normalized rank of ``answer`` among ``values``: (share below it, share at or below it)."""
    ordered = np.sort(values)
    return (
        np.searchsorted(ordered, answer, side="left") / len(ordered),
        np.searchsorted(ordered, answer, side="right") / len(ordered),
    )


def as_timestamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")
