"""Tally's application layer: the ``tally`` command, the pipeline steps the DAGs call,
``tally status``, the local stack, sample data and the ``spark-submit`` entry point.

The only layer that may import all the others (:mod:`tally.core`, :mod:`jobs`,
:mod:`cache`, :mod:`dashboard_api`); ``dags/`` import only this layer. Heavy
layers are imported where a command needs them, so ``tally status`` and
``tally serve`` start without Spark (and ``status`` without FastAPI).

Modules: ``cli`` (parser) with its handlers in ``cli_compute`` and ``cli_cache``;
``pipeline`` (DAG steps); ``status``; the local stack in ``local`` (up, down),
``demo``, ``local_config`` (its folders and ports), ``processes`` and ``services``;
``generate`` (sample data); ``submit`` (spark-submit).
"""
