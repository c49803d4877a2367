"""Getting a SparkSession: the library only ever uses the active one; jobs and the CLI create it."""

from __future__ import annotations

import os
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
    return builder.getOrCreate()
