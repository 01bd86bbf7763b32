"""A series response (``GET /v1/metrics/{name}`` JSON) as one pandas DataFrame, one row per point.

Columns, in order: ``timestamp`` (tz-aware, in the response's ``tz``), one column per
label (the filters, then the group_by dimension), ``value``, ``complete``, ``revised``,
then ``lower``/``upper`` when the points carry them and ``other`` when the request
grouped. The response's other fields (metric, grain, tz, window, q, start, end, build,
as_of, warnings) are kept in ``DataFrame.attrs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

POINT_COLUMNS = ("value", "complete", "revised")
BOUND_COLUMNS = ("lower", "upper")


def series_frame(document: dict[str, Any], labels: Sequence[str] = (), *, grouped: bool) -> pd.DataFrame:
    """``labels``: the label columns asked for (kept when no series came back); ``grouped`` adds ``other``."""
    series = document["series"]
    labels = _label_names(labels, series)
    has_bounds = any(name in point for s in series for point in s["points"] for name in BOUND_COLUMNS)
    rows = [
        {
            "timestamp": point["ts"],
            **{name: s["labels"].get(name) for name in labels},
            **{name: point.get(name) for name in POINT_COLUMNS},
            **({name: point.get(name) for name in BOUND_COLUMNS} if has_bounds else {}),
            **({"other": s.get("other", False)} if grouped else {}),
        }
        for s in series
        for point in s["points"]
    ]
    columns = ["timestamp", *labels, *POINT_COLUMNS, *(BOUND_COLUMNS if has_bounds else ()), *(["other"] * grouped)]
    frame = pd.DataFrame(rows, columns=columns)
    # Offsets vary within a zone with DST: read them as instants, then show them in the response's zone.
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").dt.tz_convert(document["tz"])
    frame["value"] = _numbers([point["value"] for s in series for point in s["points"]])
    for name in ("complete", "revised", *(("other",) if grouped else ())):
        frame[name] = frame[name].astype(bool)
    for name in BOUND_COLUMNS if has_bounds else ():
        frame[name] = frame[name].astype("float64")
    frame.attrs = {key: value for key, value in document.items() if key != "series"}
    return frame


def _label_names(asked: Sequence[str], series: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = dict.fromkeys(asked)
    for s in series:
        names.update(dict.fromkeys(s["labels"]))
    return list(names)


def _numbers(values: list[Any]) -> pd.api.extensions.ExtensionArray | list[float]:
    """Counts stay exact integers (nullable Int64: a null is <NA>); anything else is float64 with NaN.

    Taken from the JSON values themselves: a DataFrame column built from [60, None] is already float.
    """
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None):
        return pd.array(values, dtype="Int64")
    return [math.nan if v is None else float(v) for v in values]
