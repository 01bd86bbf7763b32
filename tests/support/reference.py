"""An independent computation of the default metrics with pandas, straight from raw files.

Written from the input contract, not from the job's code, so the end-to-end test
compares two implementations.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from tally.core.layout import raw_hour_dir


def valid_events(data_dir: Path, hours: list[datetime]) -> pd.DataFrame:
    frames = []
    for hour in hours:
        for path in sorted(raw_hour_dir(data_dir, hour).glob("*.parquet")):
            frame = pd.read_parquet(path)
            frame["folder_hour"] = pd.Timestamp(hour)
            frames.append(frame)
    events = pd.concat(frames, ignore_index=True)
    start = events["folder_hour"]
    time = pd.to_datetime(events["event_time"], utc=True)

    def blank(column: str) -> pd.Series:
        return events[column].isna() | (events[column] == "")

    purchase = events["event_type"] == "purchase"
    amount = events["amount"]
    bad_amount = amount.isna() | amount.map(lambda a: a is not None and (math.isinf(a) or a < 0))
    invalid = (
        blank("event_id")
        | blank("user_id")
        | blank("event_type")
        | time.isna()
        | (time < start)
        | (time >= start + timedelta(hours=1))
        | (purchase & bad_amount)
    )
    valid = events[~invalid].copy()
    valid["country"] = valid["country"].fillna("unknown")
    valid["platform"] = valid["platform"].fillna("unknown")
    return valid.drop_duplicates(subset=["folder_hour", "event_id"])


def metric(events: pd.DataFrame, name: str) -> float:
    purchases = events[events["event_type"] == "purchase"]
    if name == "events":
        return len(events)
    if name == "orders":
        return len(purchases)
    if name == "revenue":
        return float(purchases["amount"].sum())
    if name == "signups":
        return int((events["event_type"] == "signup").sum())
    if name == "active_users":
        return events["user_id"].nunique()
    if name == "sessions":
        return events["session_id"].nunique()
    if name == "purchasers":
        return purchases["user_id"].nunique()
    if name == "avg_order_value":
        return metric(events, "revenue") / metric(events, "orders")
    if name == "conversion_rate":
        return metric(events, "purchasers") / metric(events, "active_users")
    raise KeyError(name)
