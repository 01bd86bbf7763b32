"""Tally's Redis layer: the key layout, publishing durable rollups to Redis, and the reads readers share.

Owns every key under the prefix (:mod:`cache.keys`) and every write to them:
builds and their encoding (:mod:`cache.builds`), the pre-publish checks
(:mod:`cache.verify`, :mod:`cache.prepublish`), the atomic switch
(:mod:`cache.switch`, :mod:`cache.indexes`), day aggregates (:mod:`cache.days`,
HLL unions in :mod:`cache.sketches`), the publish entry (:mod:`cache.publish`),
rollback, rehydrate, pending marks (:mod:`cache.freshness`) and ACL users.

May import :mod:`tally.core`, redis, datasketches and pyarrow (through
:mod:`tally.core.rollup`, the owner of the rollup Parquet contract); never
fastapi, pyspark, airflow, :mod:`dashboard_api` or :mod:`jobs`.
"""
