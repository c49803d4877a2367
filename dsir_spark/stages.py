"""Stage bookkeeping: a JSON record per stage, written last, that marks the stage complete.

``<stage_dir>/_dsir/stage.json`` holds the stage's fingerprint (a hash of the settings and inputs it
depends on, chained through earlier stages), versions, rows in and out and seconds. A stage folder
without a record whose status is "done" is never taken for finished output: Spark's overwrite of the
stage's data removes an old record before anything new is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Callable, Optional

import pyspark
from pyspark.sql import SparkSession

from dsir_spark import __version__
from dsir_spark.io import read_json, write_json

log = logging.getLogger("dsir_spark")
RECORD = "_dsir/stage.json"  # under "_": Parquet readers of the stage folder skip it


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(spark: SparkSession, stage_dir: str) -> Optional[dict[str, Any]]:
    record = read_json(spark, f"{stage_dir}/{RECORD}")
    if record is None or record.get("status") != "done":
        return None
    return record


def run_stage(
    spark: SparkSession,
    name: str,
    stage_dir: str,
    settings: dict[str, Any],
    work: Callable[[], dict[str, Any]],
    force: bool = True,
) -> dict[str, Any]:
    """Runs ``work`` (which writes the stage's data) unless a matching complete record exists.

    Returns the stage record; ``work`` returns the counts it wants recorded (rows_in, rows_out, ...).
    """
    print_ = fingerprint(settings)
    if not force:
        record = read_record(spark, stage_dir)
        if record is not None and record.get("fingerprint") == print_:
            log.info("stage %s: complete with the same settings, skipped (%s)", name, stage_dir)
            return {**record, "skipped": True}
    log.info("stage %s: started -> %s", name, stage_dir)
    # Invalidate any earlier record first: a run killed from here on leaves no "done" behind.
    write_json(spark, f"{stage_dir}/{RECORD}", {"stage": name, "status": "running", "fingerprint": print_})
    started = time.time()
    # A job tag names the stage on every Spark job it runs (Spark UI, and Spark Connect too).
    tag = f"dsir-spark-{name}"
    spark.addTag(tag)
    try:
        summary = work()
    finally:
        spark.removeTag(tag)
    seconds = round(time.time() - started, 3)
    record = {
        "stage": name,
        "status": "done",
        "fingerprint": print_,
        "settings": settings,
        "versions": {"dsir_spark": __version__, "pyspark": pyspark.__version__, "spark": spark.version},
        "seconds": seconds,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **summary,
    }
    write_json(spark, f"{stage_dir}/{RECORD}", record)
    rows = summary.get("rows_out")
    rate = f", {rows / seconds:,.0f} rows/s" if rows and seconds else ""
    log.info("stage %s: done in %.1f s (rows out: %s%s)", name, seconds, rows, rate)
    return {**record, "skipped": False}
