"""Realistic sample events in the raw-event contract, for demos, tests and benchmarks.

Users have skewed (Zipf-like) activity and a home country; sessions belong to a
user and a platform; traffic follows a day/night cycle, is lower at weekends and
grows slowly; purchases have log-normal amounts. A small share of rows are
duplicates (a second "late" file per hour, as at-least-once delivery produces) or
invalid in each way the contract names.

An hour's events depend only on the seed and the hour (and the events per hour),
so the same hour is byte-identical whether it is generated alone, in a range, or
in another order. The user population depends on the seed (and, for its size, the
events per hour) only, so the same users come back hour after hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from tally.core.layout import ONE_HOUR, floor_hour, raw_hour_dir

EVENT_TYPES = ("page_view", "click", "search", "add_to_cart", "purchase", "signup")
EVENT_TYPE_WEIGHTS = (0.62, 0.16, 0.08, 0.07, 0.04, 0.03)
PURCHASE_INDEX = EVENT_TYPES.index("purchase")
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "NL")
COUNTRY_WEIGHTS = (0.34, 0.12, 0.1, 0.08, 0.09, 0.07, 0.06, 0.06, 0.04, 0.04)
PLATFORMS = ("web", "ios", "android")
PLATFORM_WEIGHTS = (0.5, 0.28, 0.22)
DUPLICATE_SHARE = 0.01
INVALID_SHARE = 0.005
UNKNOWN_DIMENSION_SHARE = 0.02
# Traffic by day of the week, Monday first: weekends are quieter. The mean is 1, so
# ``events_per_hour`` stays the average over a week.
WEEKDAY_FACTORS = (1.08, 1.08, 1.08, 1.08, 1.08, 0.8, 0.8)
# Slow growth, compounded from a fixed instant (not from the first hour requested, so an
# hour's traffic does not depend on the range it is generated in). The epoch is the start
# of the benchmarks' month, so their data stays about the size it was before the trend.
TREND_EPOCH = datetime(2026, 10, 1, tzinfo=UTC)
TREND_PER_30_DAYS = 0.03
# Spawn keys of the independent random streams derived from the seed.
_POPULATION_STREAM, _HOUR_STREAM = 0, 1

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


def weekday_factor(hour: datetime) -> float:
    """Traffic of ``hour``'s UTC day of the week relative to the weekly mean."""
    return WEEKDAY_FACTORS[hour.astimezone(UTC).weekday()]


def trend_factor(hour: datetime) -> float:
    """Growth of traffic since TREND_EPOCH: 1.0 there, times (1 + TREND_PER_30_DAYS) every 30 days."""
    return float((1.0 + TREND_PER_30_DAYS) ** ((hour - TREND_EPOCH) / timedelta(days=30)))


def traffic_factor(hour: datetime) -> float:
    """Expected events of ``hour`` relative to ``events_per_hour``."""
    return diurnal_factor(hour.astimezone(UTC).hour) * weekday_factor(hour) * trend_factor(hour)


def generate(
    data_dir: Path,
    start: date,
    days: int,
    events_per_hour: int,
    seed: int = 7,
    progress: bool = True,
) -> GenerateSummary:
    """Write ``days`` days of hourly event files starting at ``start`` (UTC midnight)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hours = [first + i * ONE_HOUR for i in range(days * 24)]
    return generate_hours(data_dir, hours, events_per_hour, seed=seed, progress=progress)


def generate_hours(
    data_dir: Path, hours: Sequence[datetime], events_per_hour: int, seed: int = 7, progress: bool = False
) -> GenerateSummary:
    """Write the event files of ``hours``: ``events_per_hour`` on average, scaled by ``traffic_factor``."""
    population = make_population(seed, events_per_hour)
    rows = files = 0
    for hour in tqdm(hours, desc="generating hours", unit="h", disable=not progress):
        main, late = hour_tables(population, hour, events_per_hour, seed)
        folder = raw_hour_dir(data_dir, hour)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(main, folder / "part-00000.parquet")
        pq.write_table(late, folder / "late-00001.parquet")
        rows += main.num_rows + late.num_rows
        files += 2
    return GenerateSummary(hours=len(hours), rows=rows, files=files)


@dataclass(frozen=True)
class Population:
    """The users of a generated data set: activity weights and home countries, by user number."""

    weights: np.ndarray
    countries: np.ndarray


def make_population(seed: int, events_per_hour: int) -> Population:
    """The users of ``seed``, as many as the traffic needs; the same for every hour, so users return."""
    if events_per_hour < 1:
        raise ValueError("events_per_hour must be at least 1")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_POPULATION_STREAM,)))
    size = max(200, events_per_hour * 24 // 6)
    ranks = np.arange(1, size + 1)
    weights = 1.0 / ranks**1.1
    # Indexes into COUNTRIES; len(COUNTRIES) stands for an unknown (null) country.
    countries = rng.choice(len(COUNTRIES), size=size, p=COUNTRY_WEIGHTS)
    countries[rng.random(size) < UNKNOWN_DIMENSION_SHARE] = len(COUNTRIES)
    return Population(weights / weights.sum(), countries)


def _hour_rng(seed: int, hour: datetime) -> np.random.Generator:
    # A stream per (seed, hour), not one stream consumed hour after hour: otherwise an
    # hour's data would depend on the hours generated before it in the same call, and
    # separate calls for separate days would write the same day again.
    epoch_hour = int(hour.timestamp()) // 3600
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_HOUR_STREAM, epoch_hour)))


def hour_tables(population: Population, hour: datetime, events_per_hour: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """The main and the late (duplicates) file of ``hour``, a whole hour from 1970 on."""
    if hour.tzinfo is None or floor_hour(hour) != hour:
        raise ValueError(f"{hour!r} is not a whole hour with a time zone")
    hour = hour.astimezone(UTC)
    # Column-wise with numpy and Arrow compute (no per-row Python): a million-event
    # hour takes about a second, which is what the benchmarks need.
    rng = _hour_rng(seed, hour)
    n = int(rng.poisson(events_per_hour * traffic_factor(hour)))
    users = rng.choice(len(population.weights), size=n, p=population.weights)
    # A user has one or two sessions in an hour; the session fixes the platform.
    session_keys = users * 2 + rng.integers(0, 2, size=n)
    platform_of = rng.choice(len(PLATFORMS), size=len(population.weights) * 2, p=PLATFORM_WEIGHTS)
    platform_of[rng.random(platform_of.size) < UNKNOWN_DIMENSION_SHARE] = len(PLATFORMS)  # -> null
    event_types = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_TYPE_WEIGHTS)
    amounts = np.where(event_types == PURCHASE_INDEX, np.round(rng.lognormal(3.4, 0.8, size=n), 2), np.nan)
    hour_us = int(hour.timestamp()) * 1_000_000
    times = hour_us + np.sort(rng.integers(0, 3_600_000_000, size=n))
    stamp = f"{hour:%Y%m%d%H}"
    columns = {
        "event_id": _numbered(f"{seed}-{stamp}-", np.arange(n), 7),
        "user_id": _numbered("u", users, 7),
        "session_id": _numbered(f"s{stamp}-", session_keys, 8),
        "country": pc.take(pa.array([*COUNTRIES, None]), pa.array(population.countries[users])),
        "platform": pc.take(pa.array([*PLATFORMS, None]), pa.array(platform_of[session_keys])),
    }
    _break_some_rows(rng, columns, event_types, amounts, times, hour_us)
    columns["event_time"] = pa.array(times, type=pa.timestamp("us", tz="UTC"))
    columns["event_type"] = pc.take(pa.array(EVENT_TYPES), pa.array(event_types))
    columns["amount"] = pa.array(amounts, type=pa.float64(), from_pandas=True)  # NaN -> null
    main = pa.table({name: columns[name] for name in SCHEMA.names}, schema=SCHEMA)
    duplicate_rows = rng.choice(n, size=int(n * DUPLICATE_SHARE), replace=False) if n else np.array([], int)
    late = main.take(pa.array(np.sort(duplicate_rows), type=pa.int64()))
    return main, late


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + each number zero-padded to ``width`` digits."""
    digits = pc.utf8_lpad(pa.array(numbers, type=pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _break_some_rows(
    rng: np.random.Generator,
    columns: dict[str, pa.Array],
    event_types: np.ndarray,
    amounts: np.ndarray,
    times: np.ndarray,
    hour_us: int,
) -> None:
    """Make a small share of rows invalid, one way each, as real producers do."""
    n = len(event_types)
    broken = rng.choice(n, size=int(n * INVALID_SHARE), replace=False) if n else np.array([], int)
    ways = [broken[k::5] for k in range(5)]

    def mask(rows: np.ndarray) -> pa.Array:
        flags = np.zeros(n, dtype=bool)
        flags[rows] = True
        return pa.array(flags)

    columns["user_id"] = pc.if_else(mask(ways[0]), pa.scalar(None, pa.string()), columns["user_id"])
    columns["event_id"] = pc.if_else(mask(ways[1]), pa.scalar(""), columns["event_id"])
    times[ways[2]] = hour_us - 5 * 60 * 1_000_000
    event_types[ways[3]] = PURCHASE_INDEX
    amounts[ways[3]] = -np.where(np.isnan(amounts[ways[3]]), 10.0, np.abs(amounts[ways[3]]))
    event_types[ways[4]] = PURCHASE_INDEX
    amounts[ways[4]] = np.nan
