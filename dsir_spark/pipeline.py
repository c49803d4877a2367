"""The stages in order under one run directory; a stage complete with the same settings is skipped,
and once one stage runs again, every stage after it does too. Layout: ``dsir_spark.rundir``."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from dsir_spark.config import RunConfig
from dsir_spark.rundir import STAGES, check_writable
from dsir_spark.stages.count import count_stage
from dsir_spark.stages.fit import fit_stage
from dsir_spark.stages.report import report_stage
from dsir_spark.stages.resample import resample_stage
from dsir_spark.stages.score import score_stage

RUNNERS = {"count": count_stage, "fit": fit_stage, "score": score_stage, "resample": resample_stage,
           "report": report_stage}


def run_pipeline(
    spark: SparkSession, config: RunConfig, force: bool = False, stages: tuple[str, ...] | None = None
) -> dict[str, dict[str, Any]]:
    """Runs the stages in order, skipping those already complete with the same settings."""
    check_writable(spark, config)
    records: dict[str, dict[str, Any]] = {}
    rerun = force
    for stage in stages or STAGES:
        record = RUNNERS[stage](spark, config, force=rerun)
        # Once a stage ran again, everything after it must too.
        rerun = rerun or not record.get("skipped", False)
        records[stage] = record
    return records
