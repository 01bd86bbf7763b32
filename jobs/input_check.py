"""Checking a source's input files against its declared columns, before Spark reads a row.

Every file's Parquet footer is read on the driver (metadata only, never rows; a
few files at a time), so a missing column or unusable type fails the hour with an
:class:`InputError` naming the file and the column instead of a Spark stack trace.
What each file's footer says about how a column is stored (its :class:`FileEncoding`)
tells :mod:`jobs.source` how to read it. A file whose footer is fine but whose pages
are broken fails only inside Spark; :func:`read_failure_message` gives that
failure the same kind of message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from tally.core.spec import Source


class InputError(ValueError):
    """An input file breaks its source's declared columns; the message names the file and column."""


# How a declared column is physically stored, where Spark needs to know: the
# Spark type it is read as (then cast to the declared type), or "null" for a
# column of Parquet's null type, or "timestamp_ns" for nanosecond timestamps
# (read as a long and converted; Spark's precision is microseconds).
NULL = "null"
TIMESTAMP_NANOS = "timestamp_ns"


@dataclass(frozen=True)
class FileEncoding:
    """How a file stores each declared column (files with one encoding share a Spark scan)."""

    physical: tuple[tuple[str, str], ...]  # (column, read type) in declared order


@dataclass(frozen=True)
class HourInput:
    """A source's files of one hour with their checked encodings (one footer read per file)."""

    hour: datetime
    files: tuple[Path, ...]
    encodings: tuple[FileEncoding, ...]
    rows: int = 0  # from the files' footers: what a full read returns


# Footers are read by this many threads, each a run of consecutive files: pyarrow releases
# the GIL while it opens a file and parses its footer, so an hour of thousands of small
# files (a streaming sink's, one per minute per writer) is not a serial per-file cost on
# the driver (P9, docs/performance.md). Runs, not a task per file: a future per file cost
# the submitting thread as much as the footers did.
FOOTER_READERS = 8


def inspect_hour(source: Source, hour: datetime, files: Sequence[Path]) -> HourInput:
    """Check every file of an hour against the source's columns; InputError names the first bad one.

    The first bad one in ``files``' order, as a serial check would find it: the footers
    of each run stop at its first unreadable file and the runs are taken in order; then
    each distinct schema is checked once, on the first file that has it.
    """
    size = -(-len(files) // FOOTER_READERS)  # ceiling: at most FOOTER_READERS runs
    runs = [files[i : i + size] for i in range(0, len(files), size)] if files else []
    if len(runs) > 1:
        with ThreadPoolExecutor(len(runs), thread_name_prefix="footer") as pool:
            checked = [footer for run in pool.map(_read_footers, runs) for footer in run]
    else:
        checked = [footer for run in runs for footer in _read_footers(run)]
    # check_schema reads only the fields' names and types: files whose schemas differ in
    # metadata alone (pandas writes each file's row range into it) share one check.
    distinct: list[tuple[pa.Schema, FileEncoding]] = []
    per_file = []
    for path, (schema, _) in zip(files, checked, strict=True):
        encoding = next((e for seen, e in distinct if seen.equals(schema, check_metadata=False)), None)
        if encoding is None:
            encoding = check_schema(path, schema, source)
            distinct.append((schema, encoding))
        per_file.append(encoding)
    return HourInput(hour, tuple(files), tuple(per_file), sum(rows for _, rows in checked))


def _read_footers(paths: Sequence[Path]) -> list[tuple[pa.Schema, int]]:
    return [_read_footer(path) for path in paths]


def _read_footer(path: Path) -> tuple[pa.Schema, int]:
    try:
        with pq.ParquetFile(path) as parquet:  # one footer read: the Arrow schema and the row count
            return parquet.schema_arrow, parquet.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for broken files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def check_footer(path: Path, source: Source) -> FileEncoding:
    """Validate one file's schema against the source's columns."""
    return check_schema(path, _read_footer(path)[0], source)


def check_schema(path: Path, schema: pa.Schema, source: Source) -> FileEncoding:
    """Validate a file's schema (named by ``path`` in errors) against the source's declared columns."""
    names = schema.names
    for column, _ in source.columns:
        if column not in names:
            raise InputError(f"{path}: missing required column {column!r}")
        if names.count(column) > 1:
            raise InputError(f"{path}: column {column!r} appears more than once")
    physical = []
    for column, logical in source.columns:
        arrow_type = schema.field(column).type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        read_as = _read_type(logical, arrow_type)
        if read_as is None:
            raise InputError(f"{path}: column {column!r} has type {arrow_type}, expected {logical}")
        physical.append((column, read_as))
    return FileEncoding(tuple(physical))


_INTEGER_READ_TYPES = {
    pa.int8(): "tinyint",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.uint8(): "smallint",
    pa.uint16(): "int",
    pa.uint32(): "bigint",
    pa.uint64(): "decimal(20,0)",
}


def _read_type(logical: str, arrow_type: pa.DataType) -> str | None:
    """The Spark type a column of ``arrow_type`` is read as for a ``logical`` column; None if unusable."""
    if pa.types.is_null(arrow_type):  # every value null: valid for any type
        return NULL
    if logical == "string":
        return "string" if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) else None
    if logical == "boolean":
        return "boolean" if pa.types.is_boolean(arrow_type) else None
    if logical == "timestamp":
        if not pa.types.is_timestamp(arrow_type):
            return None
        return TIMESTAMP_NANOS if arrow_type.unit == "ns" else "timestamp"
    if logical == "long":
        return _INTEGER_READ_TYPES.get(arrow_type) if pa.types.is_integer(arrow_type) else None
    if logical == "double":
        if pa.types.is_integer(arrow_type):
            return _INTEGER_READ_TYPES.get(arrow_type)
        if pa.types.is_float32(arrow_type):
            return "float"
        if pa.types.is_float64(arrow_type):
            return "double"
        if pa.types.is_decimal(arrow_type):
            return f"decimal({arrow_type.precision},{arrow_type.scale})"
        return None
    raise AssertionError(logical)


# Spark names the file it could not read, e.g. "[FAILED_READ_FILE.NO_HINT] Encountered
# error while reading file file:///data/raw/.../part-0.parquet.  SQLSTATE: KD001".
_READ_FAILURE = re.compile(r"Encountered error while reading file (\S+?)\.?\s")


def read_failure_message(exc: BaseException) -> str | None:
    """``<file>: could not be read (<root cause>)`` for a Spark read failure, else None.

    A file whose footer is fine but whose pages are broken is found only when its
    rows are read, inside Spark; this turns the JVM error into the same kind of
    message the footer check gives.
    """
    match = _READ_FAILURE.search(str(exc))
    if match is None:
        return None
    path = unquote(match.group(1).removeprefix("file://").removeprefix("file:"))
    return f"{path}: could not be read ({_root_cause(exc)})"


def _root_cause(exc: BaseException) -> str:
    cause = getattr(exc, "java_exception", None)
    if cause is None:
        return type(exc).__name__
    while cause.getCause() is not None:
        cause = cause.getCause()
    return str(cause.toString())[:300]
