"""The Spark job: raw events of an hour -> validated, de-duplicated, aggregated rollups."""
