"""Live progress of a stage, from Spark's own status (no second pass over the data): tasks done of
the tasks its jobs have started, the input read so far, the rate and an estimate of the time left.

Where it comes from: on a classic session the status tracker (tasks), and the Spark UI's REST API on the
driver where the UI runs (input bytes and rows); on Spark Connect the client's progress handler, which
the server feeds (tasks and input bytes). Where it goes: a ``ProgressView``. The default writes a plain
log line every ``progress_seconds`` (cluster logs, schedulers, notebooks); the command line, on a
terminal, redraws one line in place (see dsir_spark.cli).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession

from dsir_spark.storage.records import is_connect

log = logging.getLogger("dsir_spark")
DEFAULT_SECONDS = 30.0


@dataclass(frozen=True)
class Snapshot:
    """Where a stage's Spark work stands."""

    stage: str
    elapsed: float  # seconds since the stage started
    tasks_done: int
    tasks_total: int  # of the jobs started so far: a later job of the stage adds its own
    bytes_read: int | None  # input read by its tasks, where Spark says
    rows_read: int | None

    def seconds_left(self) -> float | None:
        """The time the tasks started so far need at the rate they have been finishing, or None."""
        if self.tasks_done <= 0 or self.tasks_total <= self.tasks_done or self.elapsed <= 0:
            return None
        return (self.tasks_total - self.tasks_done) * self.elapsed / self.tasks_done


def _size(num_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes:.0f} B"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def describe(snapshot: Snapshot) -> str:
    """One line: ``stage score: 7/12 tasks, 84.0 MB read (21.0 MB/s), 5,210 rows/s, about 0:03 left [0:04]``."""
    parts = [f"{snapshot.tasks_done:,}/{snapshot.tasks_total:,} tasks"]
    elapsed = max(snapshot.elapsed, 1e-9)
    if snapshot.bytes_read:
        parts.append(f"{_size(snapshot.bytes_read)} read ({_size(snapshot.bytes_read / elapsed)}/s)")
    if snapshot.rows_read:
        parts.append(f"{snapshot.rows_read / elapsed:,.0f} rows/s")
    left = snapshot.seconds_left()
    if left is not None:
        parts.append(f"about {duration(left)} left")
    return f"stage {snapshot.stage}: {', '.join(parts)} [{duration(snapshot.elapsed)}]"


class ProgressView:
    """Shows snapshots: by default a log line at most every ``seconds`` (0: none)."""

    def __init__(self, seconds: float = DEFAULT_SECONDS) -> None:
        self.seconds = seconds

    def configure(self, seconds: float) -> None:
        """The run's ``progress_seconds``."""
        self.seconds = seconds

    @property
    def poll_seconds(self) -> float:
        return self.seconds

    def show(self, snapshot: Snapshot) -> None:
        log.info("%s", describe(snapshot))

    def clear(self) -> None:
        """The stage ended: its summary comes next."""

    def write_above(self, text: str) -> None:
        """Text for the terminal (the JVM's own lines) that must not run into a progress line."""
        sys.stderr.write(text)
        sys.stderr.flush()


class _ClassicStatus:
    """Tasks from the status tracker; input bytes and rows from the UI's REST API where the UI runs."""

    def __init__(self, spark: SparkSession) -> None:
        context = spark.sparkContext
        self._tracker = context.statusTracker()
        self._api = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}" if context.uiWebUrl else None
        self._earlier = set(self._tracker.getActiveStageIds())  # another thread's work, not this stage's
        self._tasks: dict[int, tuple[int, int]] = {}
        self._input: dict[int, tuple[int, int]] = {}
        self._finished: set[int] = set()
        self._api_failures = 0

    def read(self) -> tuple[int, int, int | None, int | None]:
        active = set(self._tracker.getActiveStageIds()) - self._earlier
        for stage_id in active | (set(self._tasks) - active - self._finished):
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                self._tasks[stage_id] = (info.numCompletedTasks, info.numTasks)
            self._stage_input(stage_id)
            if stage_id not in active:
                self._finished.add(stage_id)  # its numbers are final
        done = sum(d for d, _ in self._tasks.values())
        total = sum(t for _, t in self._tasks.values())
        if self._api is None:
            return done, total, None, None
        return done, total, sum(b for b, _ in self._input.values()), sum(r for _, r in self._input.values())

    def _stage_input(self, stage_id: int) -> None:
        if self._api is None:
            return
        try:
            with urllib.request.urlopen(f"{self._api}/stages/{stage_id}?details=false", timeout=2) as reply:
                attempts = json.load(reply)
        except Exception as exc:  # noqa: BLE001 - the UI is an extra: without it, progress counts tasks only
            self._api_failures += 1
            if self._api_failures >= 3:
                log.debug("progress: the Spark UI's REST API did not answer (%s); counting tasks only", exc)
                self._api = None
            return
        if attempts:
            latest = max(attempts, key=lambda a: a.get("attemptId", 0))
            self._input[stage_id] = (int(latest.get("inputBytes", 0)), int(latest.get("inputRecords", 0)))

    def close(self) -> None:
        pass


class _ConnectStatus:
    """What the Spark Connect server reports with each operation's responses (tasks, input bytes)."""

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self._stages: dict[tuple[str | None, int], tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        spark.registerProgressHandler(self)

    def __call__(self, stages, inflight_tasks, operation_id, done) -> None:  # the ProgressHandler protocol
        with self._lock:
            for stage in stages or ():
                self._stages[(operation_id, stage.stage_id)] = (
                    stage.num_completed_tasks, stage.num_tasks, stage.num_bytes_read)

    def read(self) -> tuple[int, int, int | None, int | None]:
        with self._lock:
            values = list(self._stages.values())
        return sum(v[0] for v in values), sum(v[1] for v in values), sum(v[2] for v in values), None

    def close(self) -> None:
        self._spark.removeProgressHandler(self)


_view: list[ProgressView] = [ProgressView()]


def use_view(view: ProgressView) -> None:
    """Where stages show their progress from now on (the command line's terminal view, or a log view
    with the run's ``progress_seconds``)."""
    _view[0] = view


def current_view() -> ProgressView:
    return _view[0]


def configure(seconds: float) -> None:
    """Applies a run's ``progress_seconds`` to the view in use."""
    _view[0].configure(seconds)


@contextmanager
def tracked(spark: SparkSession, stage: str):
    """Shows the progress of the Spark work done inside the block, as the stage ``stage``."""
    view = _view[0]
    if view.poll_seconds <= 0:
        yield
        return
    try:
        status = _ConnectStatus(spark) if is_connect(spark) else _ClassicStatus(spark)
    except Exception as exc:  # noqa: BLE001 - progress never stops a stage
        log.debug("progress: not available here (%s)", exc)
        yield
        return
    started, stop = time.time(), threading.Event()

    def watch() -> None:
        while not stop.wait(view.poll_seconds):
            try:
                done, total, read, rows = status.read()
            except Exception as exc:  # noqa: BLE001 - e.g. the session stopping under us
                log.debug("progress: %s", exc)
                return
            if total:
                view.show(Snapshot(stage, time.time() - started, done, total, read, rows))

    watcher = threading.Thread(target=watch, name=f"dsir-spark-progress-{stage}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)
        status.close()
        view.clear()
