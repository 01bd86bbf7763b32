"""Tally's application layer: the ``tally`` command, the pipeline steps the DAGs call,
``tally status``, the local stack, sample data and the ``spark-submit`` entry point.

The only layer that may import all the others (:mod:`tally.core`, :mod:`jobs`,
:mod:`cache`, :mod:`dashboard_api`); ``dags/`` import only this layer. Heavy
layers are imported where a command needs them, so ``tally status`` and
``tally serve`` start without Spark (and ``status`` without FastAPI).
"""
