"""One run per run directory: a lease in ``<run_dir>/_dsir/lease``, refreshed while the run works.

The lease is a small JSON record (``dsir_spark.storage.records``: a plain file where the driver reaches the run
directory, else through Spark): its owner (host, process, Spark application id, start time), a random
token, and when it was last refreshed. A run that finds a lease refreshed less than
``lease_timeout_seconds`` ago refuses, naming the owner; an older one may be taken over with
``--take-over``. The run re-reads the lease at every refresh.

What it guarantees: a second run started while the first is alive is refused, naming the first. Where
the driver reaches the run directory itself (a local or mounted path), taking the lease is exclusive:
reading and writing it happen under an OS file lock, so of runs started at the same moment exactly
one wins. Elsewhere (object stores, HDFS, Spark Connect) there is no atomic create-if-absent: a run
writes its lease, waits a moment and reads it again, keeping it only if its token is still there. In
both cases a stage checks the lease before its first write and before its "done" record
(``confirm_current``), so a run that lost never records a stage as done.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from dsir_spark.run.directory import RunDirError
from dsir_spark.storage.failures import missing_filesystem
from dsir_spark.storage.records import direct_path, read_json, write_json

log = logging.getLogger("dsir_spark")
LEASE = "_dsir/lease"
ACQUIRING = "_dsir/lease.acquiring"  # the OS file lock taken while a lease is read and written
# Where the lease cannot be taken exclusively: how long a run waits before reading its lease again, at
# least this and a few times what its own write took (a rival that read before our write writes soon).
SETTLE_SECONDS = 1.0
_CURRENT: ContextVar[Lease | None] = ContextVar("dsir_lease", default=None)


class LeaseError(RuntimeError):
    """Another run holds the run directory, or took it over from this one."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _describe(lease: dict[str, Any]) -> str:
    return (f"process {lease.get('pid')} on {lease.get('host')} (Spark application {lease.get('app_id')}, "
            f"started {lease.get('started_at')})")


def _application_id(spark: SparkSession) -> str | None:
    try:
        return spark.conf.get("spark.app.id", None)
    except Exception:  # noqa: BLE001 - a Spark Connect server may not expose it; the lease works without
        return None


class Lease:
    """A held lease: ``check()`` between stages, ``release()`` at the end."""

    def __init__(self, spark: SparkSession, run_dir: str, timeout: float) -> None:
        self.spark, self.run_dir, self.timeout = spark, run_dir, timeout
        self.path = f"{run_dir.rstrip('/')}/{LEASE}"
        self.record = {"status": "held", "token": uuid.uuid4().hex, "host": socket.gethostname(),
                       "pid": os.getpid(), "app_id": _application_id(spark), "started_at": _now()}
        self.lost: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        write_json(self.spark, self.path, {**self.record, "refreshed_at": time.time()})

    def held_by_us(self) -> bool:
        current = read_json(self.spark, self.path)
        if current is not None and current.get("token") != self.record["token"]:
            self.lost = current
        return self.lost is None

    def check(self) -> None:
        if self.lost is not None or not self.held_by_us():
            raise LeaseError(f"another run took run_dir {self.run_dir} at {self.lost.get('started_at')}: "
                             f"{_describe(self.lost)}; this run stops here and writes nothing more")

    def _refresh(self) -> None:
        interval = max(1.0, self.timeout / 4)
        while not self._stop.wait(interval):
            try:
                if self.held_by_us():
                    self.write()
                else:
                    log.error("lease %s was taken over by %s", self.path, _describe(self.lost))
                    return
            except Exception as exc:  # noqa: BLE001 - a failed refresh is retried; the run goes on
                log.warning("could not refresh the lease %s: %s", self.path, str(exc).splitlines()[0])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._refresh, name="dsir-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is None and self.held_by_us():
            write_json(self.spark, self.path, {**self.record, "status": "released", "released_at": _now(),
                                               "refreshed_at": time.time()})


def owner_exited(lease: dict[str, Any]) -> bool:
    """True when the lease's owner ran on this host and its process is gone (killed, crashed)."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _refuse_if_held(run_dir: str, current: dict[str, Any] | None, timeout: float, take_over: bool) -> None:
    """Raises LeaseError when ``current`` is a lease another live run holds (or may still hold)."""
    if current is None or current.get("status") != "held":
        return
    if owner_exited(current):
        log.warning("taking over the lease of %s: its owner, %s, has exited", run_dir, _describe(current))
        return
    age = time.time() - float(current.get("refreshed_at", 0))
    if age < timeout:
        raise LeaseError(
            f"run_dir {run_dir} is in use by {_describe(current)}, last seen {age:.0f} s ago; wait for that "
            f"run to end (a lease not refreshed for lease_timeout_seconds={timeout:g} can be taken over)"
        )
    if not take_over:
        raise LeaseError(
            f"run_dir {run_dir} was in use by {_describe(current)}, last seen {age:.0f} s ago "
            f"(over lease_timeout_seconds={timeout:g}); if that run is gone, rerun with --take-over"
        )
    log.warning("taking over the lease of %s from %s", run_dir, _describe(current))


@contextmanager
def _exclusive(spark: SparkSession, run_dir: str) -> Iterator[bool]:
    """An OS file lock on the run directory's acquisition file, where the driver reaches it (True);
    elsewhere nothing (False). The lock is released by the OS if the process dies."""
    local = direct_path(spark, f"{run_dir.rstrip('/')}/{ACQUIRING}")
    if local is None:
        yield False
        return
    try:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        handle = open(local, "a")
    except OSError as exc:
        raise RunDirError(f"run_dir {run_dir} is not writable ({exc.strerror}: {exc.filename}); point "
                          "run_dir at a folder this user can write") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a rival holds it for milliseconds: read, write, done
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_first(lease: Lease) -> float:
    """Writes a new lease; returns the seconds it took. A failure is "not writable" only if no other run
    wrote the lease meanwhile (two writers at once can fail each other on object stores)."""
    started = time.time()
    try:
        lease.write()
    except (PySparkException, Py4JError, OSError) as exc:
        lease.check()  # raises if another run took it
        reason = str(exc).strip().splitlines()[0][:300]
        raise RunDirError(f"run_dir {lease.run_dir} is not writable ({reason}); point run_dir at a folder "
                          "every executor can write (HDFS, s3a://, dbfs:/ or a shared mount)") from exc
    return time.time() - started


def acquire(spark: SparkSession, run_dir: str, timeout: float, take_over: bool = False) -> Lease:
    """Takes the run directory's lease, or raises LeaseError naming the run that holds it. A lease whose
    owner process ran on this host and has exited is taken over without asking."""
    path = f"{run_dir.rstrip('/')}/{LEASE}"
    lease = Lease(spark, run_dir, timeout)
    with _exclusive(spark, run_dir) as exclusive:
        try:
            current = read_json(spark, path)
        except Exception as exc:
            missing = missing_filesystem(exc, [run_dir])
            if missing is None:
                raise
            raise RunDirError(f"run_dir {run_dir}: {missing[1]}") from None
        _refuse_if_held(run_dir, current, timeout, take_over)
        seconds = _write_first(lease)
    if not exclusive:  # a rival that read before our write may write after it: give it time, then look
        time.sleep(max(SETTLE_SECONDS, 3 * seconds))
    lease.check()
    lease.start()
    return lease


def confirm_current() -> None:
    """Raises LeaseError unless the lease held in this context (if any) is still this run's: called
    before a stage writes data and before it records itself done."""
    lease = _CURRENT.get()
    if lease is not None:
        lease.check()


@contextmanager
def held(spark: SparkSession, run_dir: str, timeout: float, take_over: bool = False) -> Iterator[Lease]:
    """The lease for the duration of a ``with`` block."""
    lease = acquire(spark, run_dir, timeout, take_over)
    token = _CURRENT.set(lease)
    try:
        yield lease
    finally:
        _CURRENT.reset(token)
        lease.release()
