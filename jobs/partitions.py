"""Hour partitions as Spark columns: of a source's folders, and of Tally's own tables.

A source ``path`` made only of ``key=value`` folders (``dt={YYYY}-{MM}-{DD}/hour={HH}``,
``year={YYYY}/month={MM}/...``) lets Spark give each file its folder's values as
partition columns, constants of the file, from which :func:`layout_hour` builds
the row's hour without parsing file paths. Tally's own tables are partitioned by
``dt``/``hour`` (:func:`tally.core.layout.partition`): :func:`partition_columns`
writes them from an hour, :func:`partition_hour` reads the hour back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from tally.core.layout import PARTITION_DAY_PATTERN, PARTITION_HOUR_PATTERN, PATH_PLACEHOLDERS


@dataclass(frozen=True)
class PartitionLayout:
    """A ``path`` whose hour folders Spark's partition discovery can read.

    ``depth`` folders below the base path, each ``key=<value>``; ``keys`` maps each
    key to what its value holds: ``date`` ({YYYY}-{MM}-{DD}) or one of ``YYYY``,
    ``MM``, ``DD``, ``HH``.
    """

    depth: int
    keys: tuple[tuple[str, str], ...]


_SINGLE = {f"{{{p}}}": p for p in ("YYYY", "MM", "DD", "HH")}


def partition_layout(path: str) -> PartitionLayout | None:
    """The partition layout of a source ``path``, or None when its folders are not all ``key=value``."""
    segments = path.strip("/").split("/")
    first = next(i for i, segment in enumerate(segments) if any(p in segment for p in PATH_PLACEHOLDERS))
    keys = []
    for segment in segments[first:]:
        key, equals, value = segment.partition("=")
        if not equals or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            return None
        if value == "{YYYY}-{MM}-{DD}":
            keys.append((key, "date"))
        elif value in _SINGLE:
            keys.append((key, _SINGLE[value]))
        else:
            return None
    parts = [kind for _, kind in keys]
    components = [p for kind in parts for p in (("YYYY", "MM", "DD") if kind == "date" else (kind,))]
    names = [key for key, _ in keys]
    if sorted(components) != sorted(_SINGLE.values()) or len(set(names)) != len(names):
        return None
    return PartitionLayout(depth=len(segments) - first, keys=tuple(keys))


def layout_hour(layout: PartitionLayout) -> Column:
    """The hour of a row's folder, from the partition columns (constants of each file)."""
    part: dict[str, Column] = {}
    for key, kind in layout.keys:
        if kind == "date":
            part["date"] = F.col(key)
        else:
            part[kind] = F.col(key)
    day = part.get("date")
    if day is None:
        day = F.make_date(part["YYYY"], part["MM"], part["DD"])
    return F.timestamp_seconds(F.unix_date(day).cast("long") * 86400 + part["HH"].cast("long") * 3600)


def partition_columns(hour: Column | str) -> list[Column]:
    """The ``dt`` and ``hour`` partition columns of Tally's own tables, from an hour column."""
    return [
        F.date_format(hour, PARTITION_DAY_PATTERN).alias("dt"),
        F.date_format(hour, PARTITION_HOUR_PATTERN).alias("hour"),
    ]


def partition_hour() -> Column:
    """The hour of the ``dt``/``hour`` partition columns of Tally's own tables."""
    return F.timestamp_seconds(F.unix_date(F.col("dt").cast("date")).cast("long") * 86400 + F.col("hour") * 3600)
