"""Realistic sample events in the raw-event contract, for demos, tests and benchmarks.

Users have skewed (Zipf-like) activity and a home country; sessions belong to a
user and a platform; traffic follows a day/night cycle; purchases have log-normal
amounts. A small share of rows are duplicates (a second "late" file per hour,
as at-least-once delivery produces) or invalid in each way the contract names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from tally.layout import ONE_HOUR, raw_hour_dir

EVENT_TYPES = ("page_view", "click", "search", "add_to_cart", "purchase", "signup")
EVENT_TYPE_WEIGHTS = (0.62, 0.16, 0.08, 0.07, 0.04, 0.03)
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "NL")
COUNTRY_WEIGHTS = (0.34, 0.12, 0.1, 0.08, 0.09, 0.07, 0.06, 0.06, 0.04, 0.04)
PLATFORMS = ("web", "ios", "android")
PLATFORM_WEIGHTS = (0.5, 0.28, 0.22)
DUPLICATE_SHARE = 0.01
INVALID_SHARE = 0.005
UNKNOWN_DIMENSION_SHARE = 0.02

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("event_type", pa.string()),
        ("amount", pa.float64()),
        ("country", pa.string()),
        ("platform", pa.string()),
    ]
)


@dataclass(frozen=True)
class GenerateSummary:
    hours: int
    rows: int
    files: int


def diurnal_factor(hour_of_day: int) -> float:
    """Traffic relative to the daily mean: low at 04:00 UTC, high at 16:00 UTC."""
    return 1.0 + 0.6 * float(np.sin(2 * np.pi * (hour_of_day - 10) / 24))


def generate(
    data_dir: Path,
    start: date,
    days: int,
    events_per_hour: int,
    seed: int = 7,
    progress: bool = True,
) -> GenerateSummary:
    """Write ``days`` days of hourly event files starting at ``start`` (UTC midnight)."""
    if days < 1 or events_per_hour < 1:
        raise ValueError("days and events_per_hour must be at least 1")
    rng = np.random.default_rng(seed)
    population = _population(rng, max(200, events_per_hour * 24 // 6))
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hours = [first + i * ONE_HOUR for i in range(days * 24)]
    rows = files = 0
    for hour in tqdm(hours, desc="generating hours", unit="h", disable=not progress):
        main, late = _hour_tables(rng, population, hour, events_per_hour, seed)
        folder = raw_hour_dir(data_dir, hour)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(main, folder / "part-00000.parquet")
        pq.write_table(late, folder / "late-00001.parquet")
        rows += main.num_rows + late.num_rows
        files += 2
    return GenerateSummary(hours=len(hours), rows=rows, files=files)


@dataclass(frozen=True)
class _Population:
    weights: np.ndarray
    countries: np.ndarray


def _population(rng: np.random.Generator, size: int) -> _Population:
    ranks = np.arange(1, size + 1)
    weights = 1.0 / ranks**1.1
    countries = rng.choice(np.array(COUNTRIES, dtype=object), size=size, p=COUNTRY_WEIGHTS)
    unknown = rng.random(size) < UNKNOWN_DIMENSION_SHARE
    countries[unknown] = None
    return _Population(weights / weights.sum(), countries)


def _hour_tables(
    rng: np.random.Generator, population: _Population, hour: datetime, mean: int, seed: int
) -> tuple[pa.Table, pa.Table]:
    n = int(rng.poisson(mean * diurnal_factor(hour.hour)))
    users = rng.choice(len(population.weights), size=n, p=population.weights)
    # A user has one or two sessions in an hour; the session fixes the platform.
    session_slot = rng.integers(0, 2, size=n)
    session_keys = users * 2 + session_slot
    platform_of = rng.choice(np.array(PLATFORMS, dtype=object), size=len(population.weights) * 2, p=PLATFORM_WEIGHTS)
    platform_of[rng.random(platform_of.size) < UNKNOWN_DIMENSION_SHARE] = None
    event_types = rng.choice(np.array(EVENT_TYPES, dtype=object), size=n, p=EVENT_TYPE_WEIGHTS)
    is_purchase = event_types == "purchase"
    amounts = np.where(is_purchase, np.round(rng.lognormal(3.4, 0.8, size=n), 2), np.nan)
    offsets = np.sort(rng.integers(0, 3_600_000_000, size=n))
    stamp = f"{hour:%Y%m%d%H}"
    columns = {
        "event_id": [f"{seed}-{stamp}-{i:07d}" for i in range(n)],
        "event_time": [hour + timedelta(microseconds=int(o)) for o in offsets],
        "user_id": [f"u{u:07d}" for u in users],
        "session_id": [f"s{stamp}-{k:08d}" for k in session_keys],
        "event_type": list(event_types),
        "amount": [None if np.isnan(a) else float(a) for a in amounts],
        "country": list(population.countries[users]),
        "platform": list(platform_of[session_keys]),
    }
    _break_some_rows(rng, columns, hour)
    main = pa.table(columns, schema=SCHEMA)
    duplicate_rows = rng.choice(n, size=int(n * DUPLICATE_SHARE), replace=False) if n else np.array([], int)
    late = main.take(pa.array(np.sort(duplicate_rows), type=pa.int64()))
    return main, late


def _break_some_rows(rng: np.random.Generator, columns: dict[str, list], hour: datetime) -> None:
    """Make a small share of rows invalid, one way each, as real producers do."""
    n = len(columns["event_id"])
    broken = rng.choice(n, size=int(n * INVALID_SHARE), replace=False) if n else []
    for k, row in enumerate(broken):
        way = k % 5
        if way == 0:
            columns["user_id"][row] = None
        elif way == 1:
            columns["event_id"][row] = ""
        elif way == 2:
            columns["event_time"][row] = hour - timedelta(minutes=5)
        elif way == 3:
            columns["event_type"][row] = "purchase"
            columns["amount"][row] = -abs(columns["amount"][row] or 10.0)
        else:
            columns["event_type"][row] = "purchase"
            columns["amount"][row] = None
