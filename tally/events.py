"""The raw event contract: required columns, their types, and why a row is invalid.

Shared by the Spark job (validation), the sample-data generator and the tests,
so the contract is written down exactly once.
"""

from __future__ import annotations

from typing import Final

# Column name -> logical type. Any other column in the input is ignored.
REQUIRED_COLUMNS: Final[dict[str, str]] = {
    "event_id": "string",
    "event_time": "timestamp",
    "user_id": "string",
    "session_id": "string",
    "event_type": "string",
    "amount": "double",
    "country": "string",
    "platform": "string",
}

# Dimension columns and the value a null becomes.
DIMENSION_COLUMNS: Final[tuple[str, ...]] = ("event_type", "country", "platform")
UNKNOWN: Final[str] = "unknown"

PURCHASE: Final[str] = "purchase"

# Invalid-row reasons, in the order they are checked: a row gets the first that applies.
MISSING_EVENT_ID: Final[str] = "missing_event_id"
MISSING_USER_ID: Final[str] = "missing_user_id"
MISSING_EVENT_TYPE: Final[str] = "missing_event_type"
MISSING_EVENT_TIME: Final[str] = "missing_event_time"
EVENT_TIME_OUTSIDE_HOUR: Final[str] = "event_time_outside_hour"
INVALID_PURCHASE_AMOUNT: Final[str] = "invalid_purchase_amount"
INVALID_REASONS: Final[tuple[str, ...]] = (
    MISSING_EVENT_ID,
    MISSING_USER_ID,
    MISSING_EVENT_TYPE,
    MISSING_EVENT_TIME,
    EVENT_TIME_OUTSIDE_HOUR,
    INVALID_PURCHASE_AMOUNT,
)
