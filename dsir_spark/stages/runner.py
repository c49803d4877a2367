"""Runs one stage's work between its records: "running" first, "done" (with counts and seconds) last."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pyspark
from pyspark.sql import SparkSession

from dsir_spark.run.directory import fingerprint, read_record, write_record
from dsir_spark.run.lease import confirm_current
from dsir_spark.runtime.progress import tracked
from dsir_spark.version import __version__

log = logging.getLogger("dsir_spark")
_running: list[str] = []  # the stage at work now, if any (what an interrupted run says it stopped in)


def current_stage() -> str | None:
    return _running[-1] if _running else None


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
    # Only the lease holder writes (see dsir_spark.run.lease). Invalidate any earlier record first: a run
    # killed from here on leaves no "done" behind.
    confirm_current()
    write_record(spark, stage_dir, {"stage": name, "status": "running", "fingerprint": print_})
    started = time.time()
    # A job tag names the stage on every Spark job it runs (Spark UI, and Spark Connect too).
    tag = f"dsir-spark-{name}"
    spark.addTag(tag)
    _running.append(name)
    try:
        with tracked(spark, name):
            summary = work()
    finally:
        _running.pop()
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
    confirm_current()  # a run that lost the run directory meanwhile records nothing
    write_record(spark, stage_dir, record)
    rows = summary.get("rows_out")
    rate = f", {rows / seconds:,.0f} rows/s" if rows and rows > 1 and seconds else ""
    log.info("stage %s: done in %.1f s (rows out: %s%s)", name, seconds, f"{rows:,}" if rows is not None else "-", rate)
    return {**record, "skipped": False}
