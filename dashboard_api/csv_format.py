"""The series response as CSV, and choosing between it and JSON (``format=`` or ``Accept``).

One owner for the CSV form of ``GET /v1/metrics/{name}``: a header row
``ts,<label columns...>,value,complete,revised`` (plus ``lower,upper`` with
``bounds=true``), then one row per point of every series, series after series.
Cells are written as the JSON writes them (numbers as JSON numbers, ``true``/``false``,
an empty cell for null), so a spreadsheet and a JSON client read the same numbers.

Pure functions over the JSON document: no FastAPI here, so the response cache
(:mod:`dashboard_api.response_cache`) can ask the same question the route does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Literal

Representation = Literal["json", "csv"]
FORMATS: tuple[Representation, ...] = ("json", "csv")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"
# A cell a spreadsheet would run as a formula (OWASP "CSV injection"); label values come from raw events.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def negotiate(format_param: str | None, accept: str | None) -> Representation | None:
    """The representation asked for; None when ``format`` names none (the route answers 400).

    ``format`` wins over ``Accept``. Without it, CSV only when the Accept header ranks
    ``text/csv`` above ``application/json``: a browser's ``*/*`` still gets JSON.
    """
    if format_param is not None:
        return next((known for known in FORMATS if known == format_param), None)
    return accepted(accept)


def accepted(accept: str | None) -> Representation:
    """The representation an ``Accept`` header alone picks."""
    if not accept:
        return "json"
    weights = _accept_weights(accept)
    return "csv" if weights.get("text/csv", 0.0) > weights.get("application/json", 0.0) else "json"


def _accept_weights(accept: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[media.lower()] = max(weights.get(media.lower(), 0.0), quality)
    return weights


def csv_etag(json_etag: str) -> str:
    """The CSV's ETag, from the JSON one of the same read: never equal, so a 304 never crosses forms."""
    return f'{json_etag[:-1]}-csv"'


def label_columns(filters: Sequence[str], group_by: str | None) -> list[str]:
    """Every series' labels are the filters plus the group_by dimension, in that order."""
    return [*filters, *([group_by] if group_by else [])]


def series_csv(document: dict[str, Any], labels: Sequence[str], *, bounds: bool) -> str:
    """The CSV text of a series document (as :func:`dashboard_api.metrics_routes.series_json` gives it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends
    extra = ["lower", "upper"] if bounds else []
    writer.writerow(["ts", *labels, "value", "complete", "revised", *extra])
    for series in document["series"]:
        label_cells = [safe_text(series["labels"].get(name, "")) for name in labels]
        for point in series["points"]:
            numbers = [cell(point["value"]), cell(point["complete"]), cell(point["revised"])]
            writer.writerow([point["ts"], *label_cells, *numbers, *(cell(point[name]) for name in extra)])
    return out.getvalue()


def cell(value: object) -> str:
    """A JSON scalar as the JSON body writes it; null is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def safe_text(text: str) -> str:
    """A label as a text cell: a leading ``'`` keeps a spreadsheet from running it as a formula."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text
