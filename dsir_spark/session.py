"""Getting a SparkSession: the library only ever uses the active one; jobs and the CLI create it."""

from __future__ import annotations

import os
import socket
import sys

from pyspark.sql import SparkSession


def active_session() -> SparkSession:
    """The active session (a notebook's ``spark``, spark-submit's, a Spark Connect client's)."""
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError(
            "no active SparkSession: pass spark=... or create one first (the CLI and jobs/ do this for you)"
        )
    return spark


def session_for_job(app_name: str) -> SparkSession:
    """The session of a command-line job. The master comes from spark-submit or the environment
    (``--master``, ``SPARK_REMOTE`` for Spark Connect); plain ``python`` falls back to local mode."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ and "SPARK_REMOTE" not in os.environ:
        # Launched by plain python: executors in local mode must run this same interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    spark = builder.getOrCreate()
    check_master_reachable(spark)
    return spark


class SessionError(RuntimeError):
    """The Spark session cannot do any work (e.g. its master cannot be reached)."""


def check_master_reachable(spark: SparkSession, timeout: float = 5.0) -> None:
    """A standalone master that cannot be reached fails here, at once, instead of after Spark's
    own minute of registration retries and a stopped context."""
    try:
        master = spark.conf.get("spark.master")
    except Exception:  # Spark Connect sessions may not expose it; nothing to check then
        return
    if not master or not master.startswith("spark://"):
        return
    errors = []
    for address in master[len("spark://"):].split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    spark.stop()
    raise SessionError(
        f"cannot reach the Spark master {master} ({'; '.join(errors)}); check --master and that the master is running"
    )
