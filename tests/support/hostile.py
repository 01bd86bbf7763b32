"""A corpus of broken and hostile raw files, one kind per case, generated on demand.

Each case writes one file (or many, for "thousands of tiny files") into an hour's
input folder, next to that hour's good file, and says what must happen:

* ``quarantine``: the hour computes; the listed rows are quarantined with their
  reason and the rest count;
* ``fail``: the hour fails, with a message that names the file (and the column,
  where there is one); no other hour is affected.

Written from the input contract (README, "Input"), not from the job's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tally.core.layout import raw_hour_dir

STRING_COLUMNS = ("event_id", "user_id", "session_id", "event_type", "country", "platform")


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path, datetime], list[Path]]  # (data dir, hour) -> the files written
    outcome: str  # "quarantine" or "fail"
    # quarantine: reason -> rows; and how many of the case's rows are valid
    reasons: dict[str, int] = field(default_factory=dict)
    valid_rows: int = 0
    # fail: text the error must contain besides the file's path
    message: str = ""


def rows(hour: datetime, count: int, prefix: str, **overrides: object) -> dict[str, list]:
    """``count`` valid contract rows inside ``hour`` as columns, with column overrides."""
    columns: dict[str, list] = {
        "event_id": [f"{prefix}-{i}" for i in range(count)],
        "event_time": [hour + timedelta(seconds=10 * i + 1) for i in range(count)],
        "user_id": [f"{prefix}-user-{i}" for i in range(count)],
        "session_id": [f"{prefix}-session-{i}" for i in range(count)],
        "event_type": ["page_view"] * count,
        "amount": [None] * count,
        "country": ["US"] * count,
        "platform": ["web"] * count,
    }
    columns.update(overrides)
    return columns


CONTRACT_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.string(),
    "event_time": pa.timestamp("us", tz="UTC"),
    "user_id": pa.string(),
    "session_id": pa.string(),
    "event_type": pa.string(),
    "amount": pa.float64(),
    "country": pa.string(),
    "platform": pa.string(),
}


def table(columns: dict[str, list], types: dict[str, pa.DataType] | None = None) -> pa.Table:
    types = {**CONTRACT_TYPES, **(types or {})}
    return pa.table({name: pa.array(values, type=types.get(name)) for name, values in columns.items()})


def folder(data_dir: Path, hour: datetime) -> Path:
    path = raw_hour_dir(data_dir, hour)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(data_dir: Path, hour: datetime, data: pa.Table, name: str = "hostile.parquet") -> list[Path]:
    path = folder(data_dir, hour) / name
    pq.write_table(data, path)
    return [path]


def write_bytes(data_dir: Path, hour: datetime, content: bytes, name: str = "hostile.parquet") -> list[Path]:
    path = folder(data_dir, hour) / name
    path.write_bytes(content)
    return [path]


def wrong_type(data_dir: Path, hour: datetime) -> list[Path]:
    columns = rows(hour, 3, "wt", event_time=["2026-11-27 10:00:00"] * 3)
    return write_table(data_dir, hour, table(columns, {"event_time": pa.string()}))


def missing_column(data_dir: Path, hour: datetime) -> list[Path]:
    return write_table(data_dir, hour, table(rows(hour, 3, "mc")).drop_columns(["user_id"]))


def truncated(data_dir: Path, hour: datetime) -> list[Path]:
    [path] = write_table(data_dir, hour, table(rows(hour, 50, "tr")))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [path]


def corrupt_pages(data_dir: Path, hour: datetime) -> list[Path]:
    """A readable footer over garbage data pages: only reading the rows can find it."""
    [path] = write_table(data_dir, hour, table(rows(hour, 2000, "cp")))
    content = bytearray(path.read_bytes())
    footer_start = len(content) - 8 - int.from_bytes(content[-8:-4], "little")
    for offset in range(200, footer_start - 200, 97):  # leave the magic bytes and the footer intact
        content[offset] ^= 0x5A
    path.write_bytes(bytes(content))
    return [path]


def zero_bytes(data_dir: Path, hour: datetime) -> list[Path]:
    return write_bytes(data_dir, hour, b"")


def not_parquet(data_dir: Path, hour: datetime) -> list[Path]:
    return write_bytes(data_dir, hour, b"event_id,event_time\nx,2026-11-27T10:00:00Z\n")


def huge_strings(data_dir: Path, hour: datetime) -> list[Path]:
    big = "x" * 1_000_000
    columns = rows(hour, 2, "hs", user_id=[big, big + "y"], session_id=[big, big], country=["C" * 5000, "US"])
    return write_table(data_dir, hour, table(columns))


# NUL, an ANSI escape, line breaks, a right-to-left override and what a decoder makes of bad bytes.
CONTROL = "a\x00b\x1b[31mc\r\n\t\u202e\ufffd"


def control_characters(data_dir: Path, hour: datetime) -> list[Path]:
    columns = rows(hour, 2, "cc", user_id=[CONTROL, "\x00"], country=[CONTROL, "ü:*?/../"], platform=["\x7f", "w"])
    return write_table(data_dir, hour, table(columns))


def binary_strings(data_dir: Path, hour: datetime) -> list[Path]:
    """Bytes that are not UTF-8, stored as a binary column where a string is required."""
    columns = rows(hour, 2, "bin", country=[b"\xff\xfe\x00", b"\xc3\x28"])
    return write_table(data_dir, hour, table(columns, {"country": pa.binary()}))


def far_timestamps(data_dir: Path, hour: datetime) -> list[Path]:
    times = [datetime(1, 1, 1, tzinfo=hour.tzinfo), datetime(9999, 12, 31, 23, 59, tzinfo=hour.tzinfo)]
    return write_table(data_dir, hour, table(rows(hour, 2, "ft", event_time=times)))


def far_timestamps_nanos(data_dir: Path, hour: datetime) -> list[Path]:
    """The extremes a nanosecond timestamp can hold (what pandas writes)."""
    times = pa.array([-(2**63) + 1, 2**63 - 1], type=pa.timestamp("ns", tz="UTC"))
    data = table(rows(hour, 2, "ftn")).set_column(1, "event_time", times)
    return write_table(data_dir, hour, data)


def all_null(data_dir: Path, hour: datetime) -> list[Path]:
    """Every column null, every column typed null (pandas writes all-None columns this way)."""
    names = list(CONTRACT_TYPES)
    return write_table(data_dir, hour, pa.table({name: pa.nulls(3) for name in names}))


def null_typed_optional_columns(data_dir: Path, hour: datetime) -> list[Path]:
    """A quiet hour's file: no purchases, so amount (and session_id) are all None, typed null."""
    data = table(rows(hour, 4, "nt"))
    data = data.set_column(data.schema.get_field_index("amount"), "amount", pa.nulls(4))
    data = data.set_column(data.schema.get_field_index("session_id"), "session_id", pa.nulls(4))
    return write_table(data_dir, hour, data)


def nested_columns(data_dir: Path, hour: datetime) -> list[Path]:
    """A struct where a string is required."""
    columns = rows(hour, 2, "nc", country=[{"code": "US"}, {"code": "DE"}])
    return write_table(data_dir, hour, table(columns, {"country": pa.struct([("code", pa.string())])}))


def extra_nested_column(data_dir: Path, hour: datetime) -> list[Path]:
    """Unknown extra columns, nested ones included, are ignored (the contract)."""
    data = table(rows(hour, 3, "en"))
    payload = pa.array([{"a": [1, 2], "b": {"c": "x"}}] * 3)
    return write_table(data_dir, hour, data.append_column("payload", payload))


def duplicate_columns(data_dir: Path, hour: datetime) -> list[Path]:
    data = table(rows(hour, 2, "dc"))
    data = pa.Table.from_arrays([*data.columns, pa.array(["x", "y"])], names=[*data.column_names, "country"])
    return write_table(data_dir, hour, data)


def naive_timestamps(data_dir: Path, hour: datetime) -> list[Path]:
    """Timestamps without a zone (pandas' naive datetimes): the contract reads them as UTC."""
    naive = [t.replace(tzinfo=None) for t in rows(hour, 3, "nv")["event_time"]]
    return write_table(data_dir, hour, table(rows(hour, 3, "nv", event_time=naive), {"event_time": pa.timestamp("us")}))


TINY_FILES = 2000


def thousands_of_tiny_files(data_dir: Path, hour: datetime) -> list[Path]:
    written = []
    for i in range(TINY_FILES):
        written += write_table(data_dir, hour, table(rows(hour, 1, f"tiny{i}")), name=f"tiny-{i:05d}.parquet")
    return written


CASES: list[Case] = [
    Case("wrong_column_type", wrong_type, "fail", message="column 'event_time' has type string"),
    Case("missing_required_column", missing_column, "fail", message="missing required column 'user_id'"),
    Case("truncated_parquet", truncated, "fail", message="not a readable Parquet file"),
    Case("corrupt_data_pages", corrupt_pages, "fail", message="could not be read"),
    Case("zero_byte_file", zero_bytes, "fail", message="not a readable Parquet file"),
    Case("not_parquet", not_parquet, "fail", message="not a readable Parquet file"),
    Case("huge_strings", huge_strings, "quarantine", valid_rows=2),
    Case("control_characters", control_characters, "quarantine", valid_rows=2),
    Case("non_utf8_binary_strings", binary_strings, "fail", message="column 'country' has type binary"),
    Case("far_past_and_future", far_timestamps, "quarantine", reasons={"event_time_outside_hour": 2}),
    Case("far_nanosecond_timestamps", far_timestamps_nanos, "quarantine", reasons={"event_time_outside_hour": 2}),
    Case("every_column_null", all_null, "quarantine", reasons={"missing_event_id": 3}),
    Case("null_typed_optional_columns", null_typed_optional_columns, "quarantine", valid_rows=4),
    Case("struct_where_string_required", nested_columns, "fail", message="column 'country' has type struct"),
    Case("extra_nested_column", extra_nested_column, "quarantine", valid_rows=3),
    Case("duplicate_column_names", duplicate_columns, "fail", message="column 'country' appears more than once"),
    Case("naive_timestamps", naive_timestamps, "quarantine", valid_rows=3),
    Case("thousands_of_tiny_files", thousands_of_tiny_files, "quarantine", valid_rows=TINY_FILES),
]
