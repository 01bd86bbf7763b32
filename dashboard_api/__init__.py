"""Tally's read-only HTTP API over the metrics published to Redis.

Owns the HTTP contract: routes (``/v1/metrics``, ``/v1/metrics/{name}``,
``/health``), their response models, error codes and the read-only (GET/HEAD)
rule, plus the query logic that turns published hours into series. It only reads
Redis, through the key layout of :mod:`cache.keys`.

Entry points: :func:`dashboard_api.app.create_app` and
:func:`dashboard_api.server.serve`.
"""

from dashboard_api.app import create_app

__all__ = ["create_app"]
