"""Fault injection: kill the running process at a named point, to prove crashes are harmless.

``TALLY_FAULT_KILL_AT=<point>`` makes a process SIGKILL itself (no cleanup, no
``finally``, like an OOM kill or a lost node) when it reaches :func:`checkpoint`
with that point. :data:`POINTS` lists every point, in the order a run reaches
them: the job's between its durable writes (:mod:`jobs.batch`), the publisher's
between its Redis steps (:mod:`cache`). ``tests/test_faults.py`` uses
it to kill real ``tally`` processes at each of them. Unset, a checkpoint costs one dict lookup.

This is read from the environment here rather than from :mod:`tally.core.settings`
because it is not configuration: it must reach any process and module (the
Spark driver, the publisher) without being threaded through their arguments,
and it has no effect unless a test sets it.
"""

from __future__ import annotations

import os
import signal

ENV = "TALLY_FAULT_KILL_AT"
POINTS: tuple[str, ...] = (
    "job:before-rollup",  # the Spark application has checked and planned its hours, written nothing of them
    "job:after-rollup",  # the rollup is written, its statistics (which mark it complete) are not
    "job:after-stats",  # the hour is complete in the durable store, not published
    "publish:before-switch",  # the new build's keys are in Redis, the pointers not switched
    "publish:before-days",  # switched, the day aggregates not yet rebuilt
)


def checkpoint(point: str) -> None:
    """Die here if a test asked for it."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
