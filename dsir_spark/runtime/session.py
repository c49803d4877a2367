"""Getting a SparkSession: the library only ever uses the active one; jobs and the CLI create it."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from pyspark.sql import SparkSession

from dsir_spark.config import TABLE_PREFIX, RunConfig
from dsir_spark.runtime.progress import current_view
from dsir_spark.storage.records import is_connect, local_path

log = logging.getLogger("dsir_spark")


def active_session() -> SparkSession:
    """The active session (a notebook's ``spark``, spark-submit's, a Spark Connect client's)."""
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError(
            "no active SparkSession: pass spark=... or create one first (the CLI and jobs/ do this for you)"
        )
    return spark


def session_for_job(app_name: str, quiet: bool = False) -> SparkSession:
    """The session of a command-line job. The master comes from spark-submit or the environment
    (``--master``, ``SPARK_REMOTE`` for Spark Connect); plain ``python`` falls back to local mode.

    ``quiet`` (the command line, but under --debug): no Spark console bar (the command line draws its own
    progress line), and the start-up lines of a JVM it launches that a user cannot act on are kept off
    the terminal (in the log at DEBUG)."""
    builder = SparkSession.builder.appName(app_name)
    if quiet:
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    if "PYSPARK_GATEWAY_PORT" not in os.environ and "SPARK_REMOTE" not in os.environ:
        # Launched by plain python: executors in local mode must run this same interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        local = _starts_local_mode(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
        if local and _same_file(os.environ["PYSPARK_PYTHON"], sys.executable):
            builder = builder.config("spark.python.daemon.module", "dsir_spark.runtime.worker_daemon")
        if quiet and launches_jvm():
            _launch_filtered_jvm(_STARTUP_NOISE + (_LOCAL_NOISE if local else ()))
    try:
        return builder.getOrCreate()
    except Exception as exc:  # an unreachable master shows up as a context stopped during start-up
        master = _submitted_master()
        check_master_reachable(master)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SessionError(f"cannot start a Spark session (master {master or 'default'}): {first_line}") from exc


# What a JVM launched by the command line prints at start-up that a user cannot act on: Java's note on
# the incubator module Spark adds, Hadoop's on its native library; and in local mode, where nothing
# binds to another machine, Spark's on a hostname that resolves to the loopback address.
_STARTUP_NOISE = ("WARNING: Using incubator modules", "NativeCodeLoader: Unable to load native-hadoop library")
_LOCAL_NOISE = ("resolves to a loopback address", "Set SPARK_LOCAL_IP if you need to bind")


def _launch_filtered_jvm(noise: tuple[str, ...]) -> None:
    """Launches the JVM PySpark would (the same spark-submit command), with its stderr passed on line by
    line above any progress line, but for the lines that hold one of ``noise`` (logged at DEBUG)."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    gateway = launch_gateway(popen_kwargs={"stderr": subprocess.PIPE, "text": True, "errors": "replace"})
    SparkContext._ensure_initialized(gateway=gateway)  # the context then joins this JVM

    def pass_on(stream) -> None:
        for line in stream:  # until the JVM exits; reading on keeps it from blocking on a full pipe
            if any(part in line for part in noise):
                log.debug("spark: %s", line.rstrip())
            else:
                current_view().write_above(line)

    threading.Thread(target=pass_on, args=(gateway.proc.stderr,), name="dsir-spark-jvm-stderr", daemon=True).start()


def _starts_local_mode(submit_args: str) -> bool:
    """Whether plain python starts Spark in local mode (no --master, or a local one, in
    PYSPARK_SUBMIT_ARGS), its Python workers then being this interpreter, which has dsir_spark; a daemon
    module the arguments name is kept."""
    args = shlex.split(submit_args)
    masters = [value for flag, value in zip(args, args[1:]) if flag == "--master"]
    masters += [arg.removeprefix("--master=") for arg in args if arg.startswith("--master=")]
    return all(m.startswith("local") for m in masters) and "spark.python.daemon.module" not in submit_args


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


# Settings for big inputs that a command-line job gets where neither spark-submit nor spark-defaults set
# them: an Arrow batch to a Python worker of at most 64 MiB (Spark's default bound is 2 GiB, only 10,000
# records: 10,000 long documents would be gigabytes in one Python worker); a listing of many paths in
# at most 100 tasks (Spark's default is one task per path up to 10,000: JSON schema inference lists every
# file of a folder again as a path of its own, 20,000 tasks for 20,000 files).
BIG_INPUT_DEFAULTS = {"spark.sql.execution.arrow.maxBytesPerBatch": str(64 << 20),
                      "spark.sql.sources.parallelPartitionDiscovery.parallelism": "100"}
# Where every input is a local or mounted path: opening a file costs about as much as reading 256 KB, not
# the 4 MB Spark assumes for object stores, so small files are packed into fewer tasks.
LOCAL_OPEN_COST = {"spark.sql.files.openCostInBytes": str(256 << 10)}


def apply_big_input_defaults(spark: SparkSession, config: RunConfig | None = None) -> dict[str, str]:
    """Sets BIG_INPUT_DEFAULTS (and LOCAL_OPEN_COST when every input of ``config`` is a path the driver
    reaches) that the session's configuration does not set (spark-submit's --conf, spark-defaults.conf
    and the builder's settings are the session's own, so they are never overridden); returns what it
    set. Spark Connect: the server's configuration is left alone."""
    if is_connect(spark):
        return {}
    wanted = dict(BIG_INPUT_DEFAULTS)
    paths = [path for dataset in (config.raw, *config.targets) for path in dataset.paths] if config else []
    if paths and all(not path.startswith(TABLE_PREFIX) and local_path(path) is not None for path in paths):
        wanted.update(LOCAL_OPEN_COST)
    chosen = {key: value for key, value in wanted.items() if spark.conf.get(key, None) is None}
    for key, value in chosen.items():
        spark.conf.set(key, value)
    return chosen


# The command line's log4j 2 configuration: Spark's console at WARN, and failed tasks' stack traces
# (local mode runs the executors in the driver's JVM) kept off the terminal.
CLI_LOGGING = Path(__file__).with_name("log4j2-cli.properties")


def launches_jvm() -> bool:
    """Whether the session this process creates starts a JVM of its own (plain python), rather than join
    one (spark-submit, a session in this process) or talk to a remote one (Spark Connect)."""
    joins = {"PYSPARK_GATEWAY_PORT", "SPARK_REMOTE"} & set(os.environ)
    return not joins and SparkSession.getActiveSession() is None


def add_jvm_options(options: str) -> None:
    """Adds JVM options to the JVM this process launches (SPARK_SUBMIT_OPTS, which spark-submit gives the
    driver's JVM; options the user sets in spark.driver.extraJavaOptions come later and win)."""
    os.environ["SPARK_SUBMIT_OPTS"] = f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} {options}".strip()


def quiet_spark_logging() -> bool:
    """Before the command line starts Spark: has the JVM it launches use CLI_LOGGING. Returns False where
    the JVM runs already (spark-submit, a session in this process) or is remote (Spark Connect): their
    logging is their own. Also silences pyspark's warning that repeats a failed Arrow conversion's
    worker trace."""
    warnings.filterwarnings("ignore", message="toPandas attempted Arrow optimization")
    # PySpark 4 logs an analysis error with its whole Java trace, as JSON, before raising it; the command
    # line tells the error in one line (--debug prints the trace).
    from pyspark.logger import PySparkLogger

    for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
    if not launches_jvm():
        return False
    add_jvm_options(f"-Dlog4j2.configurationFile={CLI_LOGGING.as_uri()}")
    return True


class SessionError(RuntimeError):
    """The Spark session cannot do any work (e.g. its master cannot be reached)."""


def _submitted_master() -> str:
    """The master the JVM was started with (spark-submit's --master), read from its configuration."""
    from pyspark import SparkConf

    try:
        return SparkConf().get("spark.master", "") or ""
    except Exception:  # pragma: no cover - no JVM to ask
        return ""


def check_master_reachable(master: str, timeout: float = 5.0) -> None:
    """Names an unreachable standalone master in the error, instead of Spark's stopped-context trace."""
    if not master.startswith("spark://"):
        return
    errors = []
    for address in master[len("spark://"):].split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    raise SessionError(
        f"cannot reach the Spark master {master} ({'; '.join(errors)}); check --master and that the master is running"
    )
