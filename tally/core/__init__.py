"""Tally's ground floor: what every other layer shares and nothing else.

Owns the settings (:mod:`tally.core.settings`), the metric spec
(:mod:`tally.core.spec`), the data layout, hour text formats and the rollup
Parquet contract (:mod:`tally.core.layout`), the run statistics
(:mod:`tally.core.runstats`) and the fault-injection points
(:mod:`tally.core.faults`).

May import: the standard library and pure-Python libraries (pydantic, pyyaml,
pyarrow). Never ``jobs``, ``cache``, ``dashboard_api``, ``tally.app``, nor
Spark, Redis, FastAPI or Airflow (enforced by import-linter, see pyproject.toml).
"""
