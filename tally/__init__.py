"""Tally: hourly Spark rollups of raw events, published to Redis, served over HTTP.

Two layers live here, at both ends of the house (docs/architecture.md):

- :mod:`tally.core`: the ground floor (settings, spec, layout, run statistics);
- :mod:`tally.app`: the top floor (CLI, pipeline steps, status, local stack).

Between them sit ``jobs`` (Spark), ``cache`` (Redis) and ``dashboard_api`` (HTTP).
:mod:`tally.client` stands outside them: an HTTP client of the API (httpx and pandas only).
"""
