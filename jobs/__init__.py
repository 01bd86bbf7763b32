"""The Spark job: an hour's raw events -> validated, de-duplicated, aggregated rollups.

Owns everything that runs on Spark: checking and reading each source's files
(:mod:`jobs.input_check`, :mod:`jobs.source`, :mod:`jobs.partitions`), the
transformations (:mod:`jobs.transform`), the Spark SQL checks of the spec
(:mod:`jobs.spec_check`), one batch's writes (:mod:`jobs.batch`,
:mod:`jobs.tables`), the input fingerprints (:mod:`jobs.inputs`), the session
(:mod:`jobs.session`), progress (:mod:`jobs.progress`) and the entry points
(:mod:`jobs.hourly`).

May import: ``tally.core``, pyspark, pyarrow, pandas and tqdm (the progress bars). Never redis, FastAPI,
Airflow, ``cache``, ``dashboard_api`` or ``tally.app`` (enforced by
import-linter, see pyproject.toml): the job writes Parquet, and publishing it to
Redis is another layer's work.
"""
