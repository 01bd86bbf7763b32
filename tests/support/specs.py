"""Two specs of our own over tables unlike the sample `events`, their raw files, and pandas answers.

`rides` (one source): ``lake/rides/year=/month=/day=/hour=`` folders, an epoch-
millisecond time column, no id (every row counts), integer fares summed as an
expression, SQL dimensions, a ``where`` and rules of its own, a boolean column.

`shop` (two sources): `visits` in bare ``web/YYYYMMDD/HH`` folders under an
absolute path, with epoch seconds and an integer id; `orders` in
``shop/orders/dt=/hr=`` with millisecond timestamps, a text id, integer and
float totals across files, a filter on a raw column and a cross-source ratio.

Every table has invalid rows for each declared reason and (where an id is
declared) duplicate deliveries; :func:`expected` recomputes every metric with
pandas from the raw files alone, never from Tally's output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

T0 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, far from the sample data's days
HOURS = [T0 + timedelta(hours=i) for i in range(3)]

RIDES_SPEC: dict[str, Any] = {
    "sketch_lg_k": 12,
    "sources": {
        "rides": {
            "path": "lake/rides/year={YYYY}/month={MM}/day={DD}/hour={HH}",
            "time": {"column": "started_at_ms", "unit": "ms"},
            "columns": {
                "ride_ref": "string",
                "started_at_ms": "long",
                "rider": "string",
                "fare_cents": "long",
                "distance_km": "double",
                "city_code": "string",
                "vehicle": "string",
                "is_shared": "boolean",
            },
            "required": ["rider", "city_code"],
            "rules": {
                "negative_fare": "fare_cents IS NOT NULL AND fare_cents >= 0",
                "implausible_distance": "distance_km IS NULL OR distance_km < 500",
            },
            "dimensions": {
                "city": {"expr": "upper(trim(city_code))"},
                "vehicle_kind": "vehicle",
                "sharing": {"expr": "CASE WHEN is_shared THEN 'shared' ELSE 'solo' END"},
            },
        }
    },
    "dashboard": {"cards": ["fare_total", "trips"]},
    "metrics": [
        {
            "name": "trips",
            "description": "Rides.",
            "unit": "rides",
            "kind": "count",
            "dimensions": ["city", "vehicle_kind", "sharing"],
        },
        {
            "name": "fare_total",
            "description": "Fares.",
            "unit": "currency",
            "kind": "sum",
            "field": "fare_cents / 100.0",
            "dimensions": ["city", "vehicle_kind"],
        },
        {
            "name": "long_trips",
            "description": "Rides over 10 km.",
            "unit": "rides",
            "kind": "count",
            "where": "distance_km > 10",
            "dimensions": ["city"],
        },
        {
            "name": "riders",
            "description": "Distinct riders.",
            "unit": "riders",
            "kind": "count_distinct",
            "field": "rider",
            "dimensions": ["city"],
        },
        {
            "name": "shared_fares",
            "description": "Fares of shared rides.",
            "unit": "currency",
            "kind": "sum",
            "field": "fare_cents / 100.0",
            "filter": {"sharing": "shared"},
            "dimensions": ["city"],
        },
        {
            "name": "fare_per_trip",
            "description": "Fare per ride.",
            "unit": "currency",
            "kind": "ratio",
            "numerator": "fare_total",
            "denominator": "trips",
            "dimensions": ["city"],
        },
    ],
}


def shop_spec(visits_root: Path) -> dict[str, Any]:
    return {
        "sources": {
            "visits": {
                "path": str(visits_root / "web" / "{YYYY}{MM}{DD}" / "{HH}"),
                "time": {"column": "ts", "unit": "s"},
                "id": "visit_id",
                "columns": {
                    "visit_id": "long",
                    "ts": "long",
                    "visitor": "string",
                    "market": "string",
                    "bounced": "boolean",
                },
                "required": ["visitor"],
                "dimensions": {"market": {"expr": "lower(market)"}},
            },
            "orders": {
                "path": "shop/orders/dt={YYYY}-{MM}-{DD}/hr={HH}",
                "time": "placed_at",
                "id": "order_no",
                "columns": {
                    "order_no": "string",
                    "placed_at": "timestamp",
                    "customer": "string",
                    "total": "double",
                    "qty": "long",
                    "market": "string",
                    "status": "string",
                },
                "required": ["order_no", "customer"],
                "rules": {"bad_total": "total IS NOT NULL AND NOT isnan(total) AND total >= 0"},
                "dimensions": {"market": {"expr": "lower(market)"}, "status": "status"},
            },
        },
        "metrics": [
            {
                "name": "visits",
                "description": "Visits.",
                "unit": "visits",
                "kind": "count",
                "source": "visits",
                "dimensions": ["market"],
            },
            {
                "name": "visitors",
                "description": "Distinct visitors.",
                "unit": "visitors",
                "source": "visits",
                "kind": "count_distinct",
                "field": "visitor",
                "dimensions": ["market"],
            },
            {
                "name": "bounces",
                "description": "Bounced visits.",
                "unit": "visits",
                "kind": "count",
                "source": "visits",
                "filter": {"bounced": True},
                "dimensions": ["market"],
            },
            {
                "name": "paid_orders",
                "description": "Paid or shipped orders.",
                "unit": "orders",
                "kind": "count",
                "source": "orders",
                "filter": {"status": ["paid", "shipped"]},
                "dimensions": ["market", "status"],
            },
            {
                "name": "order_revenue",
                "description": "Revenue of orders with items.",
                "unit": "currency",
                "kind": "sum",
                "source": "orders",
                "field": "total",
                "where": "qty > 0",
                "dimensions": ["market"],
            },
            {
                "name": "buyers",
                "description": "Distinct customers.",
                "unit": "customers",
                "kind": "count_distinct",
                "source": "orders",
                "field": "customer",
            },
            {
                "name": "visit_conversion",
                "description": "Paid orders per visit.",
                "unit": "ratio",
                "kind": "ratio",
                "numerator": "paid_orders",
                "denominator": "visits",
                "dimensions": ["market"],
            },
        ],
    }


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --- raw tables -----------------------------------------------------------------


def _millis(hour: datetime, rng: np.random.Generator, n: int) -> np.ndarray:
    return int(hour.timestamp() * 1000) + rng.integers(0, 3_600_000, n)


def write_rides(data_dir: Path, hour: datetime, rng: np.random.Generator, n: int = 600) -> None:
    folder = data_dir / f"lake/rides/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "ride_ref": [f"r{hour:%H}-{i}" for i in range(n)],
            "started_at_ms": _millis(hour, rng, n),
            "rider": [f"rider{v}" for v in rng.integers(0, 250, n)],
            "fare_cents": rng.integers(150, 9000, n),
            "distance_km": np.round(rng.gamma(2.0, 4.0, n), 2),
            "city_code": rng.choice(["ber", " ber", "par", "lis", None], n, p=[0.4, 0.05, 0.3, 0.2, 0.05]),
            "vehicle": rng.choice(["car", "bike", None], n, p=[0.6, 0.3, 0.1]),
            "is_shared": rng.choice([True, False], n),
            "ignored_extra": "x",  # undeclared: never read
        }
    )
    # One row for each reason, in the order they are checked.
    frame.loc[0, "rider"] = None  # missing_rider
    frame.loc[1, "rider"] = ""  # missing_rider (empty text)
    frame.loc[2, "city_code"] = None  # missing_city_code
    frame.loc[3, "started_at_ms"] = int((hour - timedelta(minutes=5)).timestamp() * 1000)  # outside the hour
    frame.loc[4, "started_at_ms"] = 9_000_000_000_000_000  # absurd epoch: outside the hour too
    frame.loc[5, "fare_cents"] = -100  # negative_fare
    frame.loc[6, "distance_km"] = 900.0  # implausible_distance
    half = n // 2
    # Two files with different physical types: int32 fares, and int64 with a missing-time row.
    first = pa.Table.from_pandas(frame.iloc[:half], preserve_index=False)
    first = first.set_column(
        first.schema.get_field_index("fare_cents"), "fare_cents", first.column("fare_cents").cast(pa.int32())
    )
    pq.write_table(first, folder / "part-0.parquet")
    rest = frame.iloc[half:].copy()
    rest["started_at_ms"] = rest["started_at_ms"].astype("Int64")
    rest.iloc[0, rest.columns.get_loc("started_at_ms")] = pd.NA  # missing_started_at_ms
    rest.to_parquet(folder / "part-1.parquet", index=False)


def write_visits(root: Path, hour: datetime, rng: np.random.Generator, n: int = 500) -> None:
    folder = root / "web" / f"{hour:%Y%m%d}" / f"{hour:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    base = int(hour.timestamp())
    frame = pd.DataFrame(
        {
            "visit_id": np.arange(n, dtype=np.int64) + int(hour.timestamp()) * 1000,
            "ts": base + rng.integers(0, 3600, n),
            "visitor": [f"v{x}" for x in rng.integers(0, 300, n)],
            "market": rng.choice(["DE", "de", "FR", "US", None], n, p=[0.3, 0.1, 0.2, 0.35, 0.05]),
            "bounced": rng.choice([True, False, None], n, p=[0.3, 0.6, 0.1]),
        }
    )
    frame.loc[0, "visitor"] = None  # missing_visitor
    frame.loc[1, "ts"] = base + 7200  # ts_outside_hour
    duplicates = frame.iloc[10:30]  # delivered twice: count once
    pd.concat([frame, duplicates]).to_parquet(folder / "visits.parquet", index=False)


def write_orders(data_dir: Path, hour: datetime, rng: np.random.Generator, n: int = 300) -> None:
    folder = data_dir / f"shop/orders/dt={hour:%Y-%m-%d}/hr={hour:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "order_no": [f"o{hour:%H}-{i}" for i in range(n)],
            "placed_at": pd.to_datetime(
                int(hour.timestamp() * 1000) + rng.integers(0, 3_600_000, n), unit="ms", utc=True
            ),
            "customer": [f"c{x}" for x in rng.integers(0, 120, n)],
            "total": rng.integers(1, 400, n).astype(np.int64),
            "qty": rng.integers(0, 4, n).astype(np.int32),
            "market": rng.choice(["de", "fr", "us", "US"], n),
            "status": rng.choice(["paid", "shipped", "cancelled", None], n, p=[0.5, 0.2, 0.2, 0.1]),
        }
    )
    frame.loc[0, "customer"] = None  # missing_customer
    frame.loc[1, "order_no"] = ""  # missing_order_no
    frame.loc[2, "placed_at"] = pd.NaT  # missing_placed_at
    half = n // 2
    ints = pa.Table.from_pandas(frame.iloc[:half], preserve_index=False)  # integer totals (int64)
    ints = ints.set_column(
        ints.schema.get_field_index("placed_at"),
        "placed_at",
        ints.column("placed_at").cast(pa.timestamp("ms", tz="UTC")),
    )
    pq.write_table(ints, folder / "a.parquet")
    floats = frame.iloc[half:].copy()
    floats["total"] = floats["total"].astype(float) + 0.25
    floats.iloc[0, floats.columns.get_loc("total")] = -3.0  # bad_total
    floats.iloc[1, floats.columns.get_loc("total")] = np.nan  # bad_total (NaN >= 0 is false)
    dup = floats.iloc[5:15]
    pd.concat([floats, dup]).to_parquet(folder / "b.parquet", index=False, coerce_timestamps="us")


def write_tables(data_dir: Path, visits_root: Path, hours: list[datetime], seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for hour in hours:
        write_rides(data_dir, hour, rng)
        write_visits(visits_root, hour, rng)
        write_orders(data_dir, hour, rng)


# --- the independent computation ------------------------------------------------------


def _read(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype("string") == "")


def rides_frame(data_dir: Path, hour: datetime) -> tuple[pd.DataFrame, dict[str, int]]:
    """Valid rides of the hour (no id: every row counts) and the invalid rows per reason."""
    raw = _read(data_dir / f"lake/rides/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}")
    start = hour.timestamp() * 1000
    ms = pd.to_numeric(raw["started_at_ms"], errors="coerce")
    checks = [
        ("missing_rider", _blank(raw["rider"])),
        ("missing_city_code", _blank(raw["city_code"])),
        ("missing_started_at_ms", ms.isna()),
        ("started_at_ms_outside_hour", (ms < start) | (ms >= start + 3_600_000)),
        ("negative_fare", ~(raw["fare_cents"].notna() & (raw["fare_cents"] >= 0))),
        ("implausible_distance", ~(raw["distance_km"].isna() | (raw["distance_km"] < 500))),
    ]
    return _classify(raw, checks)


def _classify(raw: pd.DataFrame, checks: list[tuple[str, pd.Series]]) -> tuple[pd.DataFrame, dict[str, int]]:
    remaining = pd.Series(True, index=raw.index)
    reasons = {}
    for reason, bad in checks:
        hit = remaining & bad.fillna(False).astype(bool)
        reasons[reason] = int(hit.sum())
        remaining &= ~hit
    return raw[remaining].copy(), reasons


def visits_frame(root: Path, hour: datetime) -> tuple[pd.DataFrame, dict[str, int]]:
    raw = _read(root / "web" / f"{hour:%Y%m%d}" / f"{hour:%H}")
    start = hour.timestamp()
    checks = [
        ("missing_visitor", _blank(raw["visitor"])),
        ("missing_ts", raw["ts"].isna()),
        ("ts_outside_hour", (raw["ts"] < start) | (raw["ts"] >= start + 3600)),
    ]
    valid, reasons = _classify(raw, checks)
    return valid.drop_duplicates("visit_id"), reasons


def orders_frame(data_dir: Path, hour: datetime) -> tuple[pd.DataFrame, dict[str, int]]:
    raw = _read(data_dir / f"shop/orders/dt={hour:%Y-%m-%d}/hr={hour:%H}")
    placed = pd.to_datetime(raw["placed_at"], utc=True)
    total = raw["total"].astype(float)
    checks = [
        ("missing_order_no", _blank(raw["order_no"])),
        ("missing_customer", _blank(raw["customer"])),
        ("missing_placed_at", placed.isna()),
        ("placed_at_outside_hour", (placed < hour) | (placed >= hour + timedelta(hours=1))),
        ("bad_total", ~(total.notna() & (total >= 0))),
    ]
    valid, reasons = _classify(raw, checks)
    return valid.drop_duplicates("order_no"), reasons


def rides_metrics(valid: pd.DataFrame) -> dict[str, Any]:
    city = valid["city_code"].str.strip().str.upper()
    fare = valid["fare_cents"] / 100.0
    shared = valid["is_shared"].fillna(False).astype(bool)
    return {
        "trips": len(valid),
        "trips_by_city": city.value_counts().to_dict(),
        "trips_bike_shared": int(((valid["vehicle"] == "bike") & shared).sum()),
        "trips_unknown_vehicle": int(valid["vehicle"].isna().sum()),
        "fare_total": float(fare.sum()),
        "fare_total_ber_car": float(fare[(city == "BER") & (valid["vehicle"] == "car")].sum()),
        "long_trips": int((valid["distance_km"] > 10).sum()),
        "riders": valid["rider"].nunique(),
        "shared_fares": float(fare[shared].sum()),
    }


def shop_metrics(visits: pd.DataFrame, orders: pd.DataFrame) -> dict[str, Any]:
    market = visits["market"].str.lower().fillna("unknown")
    paid = orders[orders["status"].isin(["paid", "shipped"])]
    with_items = orders[orders["qty"] > 0]
    return {
        "visits": len(visits),
        "visits_de": int((market == "de").sum()),
        "visits_unknown": int((market == "unknown").sum()),
        "visitors": visits["visitor"].nunique(),
        "bounces": int(visits["bounced"].eq(True).sum()),
        "paid_orders": len(paid),
        "paid_orders_us": int((paid["market"].str.lower() == "us").sum()),
        "paid_orders_us_shipped": int(((paid["market"].str.lower() == "us") & (paid["status"] == "shipped")).sum()),
        "order_revenue": float(with_items["total"].astype(float).sum()),
        "buyers": orders["customer"].nunique(),
    }
