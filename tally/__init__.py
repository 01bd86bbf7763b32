"""Tally core: settings, the metric spec, the data layout and the command line.

The pipeline lives in the sibling packages: ``jobs`` (Spark), ``cache`` (Redis
publishing) and ``dashboard_api`` (the read-only HTTP API).
"""
