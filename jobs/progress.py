"""Progress bars for long CLI commands, on stderr and only when stderr is a terminal.

``tally backfill`` computes all its hours in one Spark application, as one batch,
so there is no per-hour step to count while Spark works: :func:`spark_tasks`
follows the application's tasks instead (through Spark's status tracker, polled
from a thread; on a Spark Connect client, through the session's progress
handler), and :func:`hours` counts the hours as they are read for publishing.
Logs, pipes and CI get no bars and no change in output.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
POLL_SECONDS = 0.5


def wanted(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (stderr) is a terminal: bars would garble a log file."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def hours(items: Iterable[T], desc: str, *, enabled: bool, total: int | None = None) -> Iterable[T]:
    """``items`` unchanged, counted on a bar when ``enabled``."""
    if not enabled:
        return items
    return tqdm(items, desc=desc, unit="h", total=total, file=sys.stderr, leave=True)


@contextmanager
def spark_tasks(desc: str, *, enabled: bool, file: IO[str] | None = None) -> Iterator[None]:
    """While the block runs, a bar over the tasks of every Spark stage that starts in it."""
    if not enabled:
        yield
        return
    bar = tqdm(desc=desc, unit="task", total=0, file=file or sys.stderr, leave=True)
    done = threading.Event()
    tracker = _StageTracker()
    _poll_once(tracker)  # a Connect session that already exists reports from the block's first operation on
    poller = threading.Thread(target=_poll, args=(tracker, bar, done), name="spark-progress", daemon=True)
    poller.start()
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        done.set()
        poller.join(timeout=5)
        _poll_once(tracker)
        tracker.stop_following()
        if succeeded:
            tracker.finish()
        _show(tracker, bar)
        bar.close()


class _StageTracker:
    """Completed and total tasks per stage of the jobs started since it was created.

    Reads the jobs Spark retains (not only the active stages), so a stage that
    starts and ends between two polls is still counted.
    """

    def __init__(self) -> None:
        self.earlier_jobs = _job_ids(_status())
        self.stages: dict[Any, tuple[int, int]] = {}
        self.connect_session: Any = None

    def poll(self) -> None:
        status = _status()
        if status is None:  # not started yet, already stopped, or a Spark Connect client
            self._follow_connect()
            return
        for job_id in _job_ids(status) - self.earlier_jobs:
            job = status.getJobInfo(job_id)
            if job is None:
                continue
            for stage_id in job.stageIds:
                stage = status.getStageInfo(stage_id)
                # A finished job's stage that ran no task was skipped (its shuffle output was reused).
                if stage is None or (job.status == "SUCCEEDED" and stage.numCompletedTasks == 0):
                    self.stages.pop(stage_id, None)
                    continue
                self.stages[stage_id] = (stage.numCompletedTasks, stage.numTasks)

    def _follow_connect(self) -> None:
        """On a Spark Connect client, have the session report its stages (it has no status tracker)."""
        session = _connect_session()
        if session is not None and session is not self.connect_session:
            session.registerProgressHandler(self.on_connect_progress)
            self.connect_session = session

    def on_connect_progress(self, stages: Any, inflight_tasks: int, operation_id: str | None, done: bool) -> None:
        # Stage ids are per server application, shared by every client: key them by operation too.
        for stage in stages or ():
            self.stages[operation_id, stage.stage_id] = (stage.num_completed_tasks, stage.num_tasks)

    def stop_following(self) -> None:
        if self.connect_session is not None:
            self.connect_session.removeProgressHandler(self.on_connect_progress)
            self.connect_session = None

    def finish(self) -> None:
        self.stages = {stage_id: (total, total) for stage_id, (_, total) in self.stages.items()}

    @property
    def counts(self) -> tuple[int, int]:
        return sum(c for c, _ in self.stages.values()), sum(t for _, t in self.stages.values())


def _status() -> Any:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    return None if context is None else context.statusTracker()


def _connect_session() -> Any:
    # Only a process that made a Connect session has the module loaded; never import grpc for nothing.
    # The poller is its own thread: the active session is per thread, active() falls back to the default.
    module = sys.modules.get("pyspark.sql.connect.session")
    if module is None:
        return None
    try:
        return module.SparkSession.active()
    except Exception:  # no session yet (PySparkRuntimeError), or one stopping
        return None


def _job_ids(status: Any) -> set[int]:
    return set() if status is None else set(status.getJobIdsForGroup(None))


def _poll(tracker: _StageTracker, bar: tqdm, done: threading.Event) -> None:
    while not done.wait(POLL_SECONDS):
        _poll_once(tracker)
        _show(tracker, bar)


def _poll_once(tracker: _StageTracker) -> None:
    try:
        tracker.poll()
    except Exception:  # the context may stop mid-poll; a progress bar must never fail the command
        return


def _show(tracker: _StageTracker, bar: tqdm) -> None:
    completed, total = tracker.counts
    bar.total = total
    bar.n = completed
    bar.set_postfix_str(f"{len(tracker.stages)} stages", refresh=False)
    bar.refresh()
