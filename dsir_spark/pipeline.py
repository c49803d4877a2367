"""The stages in order under one run directory; a stage complete with the same settings is skipped,
and once one stage runs again, every stage after it does too. Layout: ``dsir_spark.run.directory``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from dsir_spark.config import RunConfig, require_sample_size
from dsir_spark.featurizer.model_tokens import load_model_tokenizer
from dsir_spark.run.directory import complete_record, input_fingerprint, require_own_output, run_stages
from dsir_spark.run.lease import held
from dsir_spark.runtime.progress import configure as configure_progress
from dsir_spark.stages.count import count_stage
from dsir_spark.stages.fit import fit_stage
from dsir_spark.stages.report import raw_for_report, report_stage
from dsir_spark.stages.resample import (
    check_external_scores,
    check_selectable_from_counts,
    raw_for_resample,
    resample_stage,
)
from dsir_spark.stages.score import score_stage
from dsir_spark.storage.failures import reading
from dsir_spark.storage.io import one_listing, output_table, require_writable_table
from dsir_spark.storage.records import NeedsSession

log = logging.getLogger("dsir_spark")


@dataclass(frozen=True)
class Step:
    stage: str
    runs: bool
    record: dict[str, Any] | None  # the stage's record when it is complete and skipped


RUNNERS = {"count": count_stage, "fit": fit_stage, "score": score_stage, "resample": resample_stage,
           "report": report_stage}


def plan(spark: SparkSession | None, config: RunConfig, force: bool, stages: tuple[str, ...]) -> list[Step]:
    """The steps in order: a stage runs when forced, when it is not complete with the current settings,
    or when an earlier stage runs (its output is this stage's input); a complete one keeps its record.
    ``spark`` None: read without a session (see complete_without_session)."""
    steps, rerun, inputs = [], force, input_fingerprint(spark, config)
    for stage in stages:
        if stage == "report" and not config.report.enabled:  # off: nothing to run, nothing to wait for
            steps.append(Step(stage, False, {"stage": stage, "reason": "report.enabled is false"}))
            continue
        # Scores from elsewhere (resample.scores) are not fingerprinted: the selection is made again.
        external = stage == "resample" and config.resample.scores is not None
        record = None if rerun or external else complete_record(spark, config, stage, inputs)
        steps.append(Step(stage, record is None, record))
        rerun = rerun or record is None
    return steps


def check_outputs(spark: SparkSession, config: RunConfig, running: set[str]) -> None:
    """The outputs of the stages that will run must be writable (tables) and free to replace (out_dir),
    checked before any heavy work."""
    if "score" in running and config.score.table:
        require_writable_table(spark, config.score.table, config.score.table_mode, "score.table")
    table = output_table(config.resample.out_dir)
    if "resample" in running and table:
        require_writable_table(spark, table, config.resample.table_mode, "resample.out_dir")
    if "resample" in running:
        require_own_output(spark, config)


def check_columns(spark: SparkSession, config: RunConfig, running: set[str]) -> None:
    """The raw columns the later stages need (group and label columns, no column the output adds itself),
    checked from the schema before any pass over the data."""
    refresh = "count" in running  # the count stage's own opening of raw, made once (see run.directory.open_dataset)
    if "resample" in running:
        raw_for_resample(spark, config, refresh)
    if "report" in running and config.report.enabled and config.report.label_col:
        raw_for_report(spark, config, refresh)


def _stages(config: RunConfig, stages: tuple[str, ...] | None) -> tuple[str, ...]:
    return stages if stages is not None else run_stages(config)


def complete_without_session(config: RunConfig) -> dict[str, dict[str, Any]] | None:
    """The records of a run whose every stage is complete with the current settings, read with no Spark
    session at all (a local run directory and local inputs); None when a stage must run or anything
    needs Spark to be read. It only reads: a run in progress elsewhere leaves a stage not "done"."""
    try:
        with one_listing():
            steps = plan(None, config, False, _stages(config, None))
    except NeedsSession:
        return None
    if any(step.runs for step in steps):
        return None
    return {step.stage: {**step.record, "skipped": True} for step in steps}


def run_pipeline(
    spark: SparkSession, config: RunConfig, force: bool = False, stages: tuple[str, ...] | None = None,
    take_over: bool = False, reuse_counts: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs the stages in order, skipping those already complete with the same settings, under the run
    directory's lease (``take_over``: take a lease its owner stopped refreshing). The count stage reuses
    each dataset's counts made from the same files and settings (``reuse_counts``, default: not ``force``)."""
    reuse = not force if reuse_counts is None else reuse_counts
    if "resample" in _stages(config, stages):
        require_sample_size(config.resample)  # before any work
    configure_progress(config.progress_seconds)
    with one_listing(), reading(config.raw, *config.targets), \
            held(spark, config.run_dir, config.lease_timeout_seconds, take_over):
        steps = plan(spark, config, force, _stages(config, stages))
        running = {step.stage for step in steps if step.runs}
        check_outputs(spark, config, running)
        check_columns(spark, config, running)
        if config.resample.scores and "resample" in running:
            check_external_scores(spark, config)  # before count and fit run
        if "resample" in running:  # tokens.tokenizer read and checked before any pass, not after scoring
            load_model_tokenizer(spark, config.tokens)
        records = {}
        for step in steps:
            if not step.runs:  # complete with the same settings: nothing of it is read again
                reason = step.record.get("reason", "complete with the same settings")
                log.info("stage %s: %s, skipped", step.stage, reason)
                records[step.stage] = {**step.record, "skipped": True}
            else:
                options = {"reuse": reuse} if step.stage == "count" else {}
                records[step.stage] = RUNNERS[step.stage](spark, config, force=True, **options)
            if step.stage == "count" and "resample" in running:
                check_selectable_from_counts(config, records["count"])  # before fit and score
        return records
