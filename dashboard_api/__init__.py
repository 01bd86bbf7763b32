"""Tally's read-only HTTP API over the metrics published to Redis.

Owns the HTTP contract: the routes (``/v1/metrics``, ``/v1/metrics/{name}``,
``/v1/metrics/{name}/values/{dimension}``, ``/v1/runs``, ``/health``), their
response models (the OpenAPI document), error codes, HTTP caching and the
read-only (GET/HEAD) rule; and the query logic that turns published hours into
series, in modules of one purpose each:

- :mod:`~dashboard_api.params` validates a raw query into a request of
  :mod:`~dashboard_api.requests`;
- :mod:`~dashboard_api.plan` lists the hashes it needs, :mod:`~dashboard_api.store`
  reads them into a snapshot (the API's only Redis reads);
- :mod:`~dashboard_api.evaluate` computes values over spans,
  :mod:`~dashboard_api.series` groups and ranks them into series and
  :mod:`~dashboard_api.present` says how a figure is served;
- :mod:`~dashboard_api.routes` registers the handlers, which live by resource
  (``metrics_routes``, ``values_routes``, ``runs_routes``, ``health_routes``).

It may import :mod:`tally.core` (settings, spec, layout) and :mod:`cache` (key
layout, shared reads, sketches); never ``jobs``, ``pyspark``, ``airflow`` or
``tally.app``, which sit beside or above it (import-linter holds this; see
``pyproject.toml``). It only reads Redis.

Entry points: :func:`dashboard_api.app.create_app` and
:func:`dashboard_api.server.serve`.
"""

from dashboard_api.app import create_app

__all__ = ["create_app"]
