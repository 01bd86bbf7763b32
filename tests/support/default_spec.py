"""What the tests expect of the default spec (tally/metrics.yaml): its public metrics, in order."""

from __future__ import annotations

DEFAULT_NAMES = [
    "events",
    "revenue",
    "orders",
    "avg_order_value",
    "signups",
    "active_users",
    "sessions",
    "purchasers",
    "order_value_p95",
    "max_order",
    "new_users",
    "returning_users",
    "viewers",
    "carters",
    "buyers",
    "conversion_rate",
    "stickiness",
]
