"""Resample stage: exactly ``num_to_sample`` scored documents by seeded Gumbel top-k, written with all
their original columns."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.chunks import expand_chunks, is_chunked
from dsir_spark.config import RunConfig
from dsir_spark.io import ID, check_ids, good_rows, original_columns, output_table, require_writable_table, write_table
from dsir_spark.model import DSIRModel
from dsir_spark.resampling import ResampleError, select
from dsir_spark.rundir import (
    default_out_dir,
    input_fingerprint,
    invalidate_outputs,
    open_dataset,
    publish_folder,
    read_record,
    require_stage,
    stage_complete,
    stage_dir,
    stage_settings,
)
from dsir_spark.scores import open_scores, scores_location, weight_columns
from dsir_spark.stages.runner import run_stage

log = logging.getLogger("dsir_spark")


def write_selection(
    selection: DataFrame, raw: DataFrame, selection_dir: str, out_dir: str, *, expected: int,
    output_format: str = "parquet", add_dsir_columns: bool = True, generated_ids: bool = False,
    table_mode: str = "error",
) -> int:
    """Writes the selected (id, key, ...) to ``<selection_dir>/ids`` and the selected raw rows, with all
    their columns, to ``out_dir`` (a folder, or ``table:<name>`` for a catalog table written with
    ``table_mode``); returns the number of documents written.

    The documents are staged in ``<selection_dir>/documents`` and counted first: unless there are
    exactly ``expected`` of them, ``out_dir`` is not written and a ResampleError says why."""
    spark = selection.sparkSession
    selection.write.mode("overwrite").parquet(f"{selection_dir}/ids")
    chosen = spark.read.parquet(f"{selection_dir}/ids")
    joined = raw.join(chosen.withColumnRenamed(ID, "__dsir_id"), on="__dsir_id", how="inner")
    columns = [F.col(f"`{c}`") for c in original_columns(raw)]
    if generated_ids:
        columns.append(F.col("__dsir_id").alias("dsir_id"))
    if add_dsir_columns:
        columns += [F.col("log_weight").alias("dsir_log_weight"), F.col("target").alias("dsir_target")]
    table = output_table(out_dir)
    fmt = "parquet" if table else output_format  # staged as it will be published: a rename publishes it
    staged = f"{selection_dir}/documents"
    writer = joined.select(*columns).write.mode("overwrite")
    (writer.json if fmt == "json" else writer.parquet)(staged)
    # A JSON Lines file holds one document per line, so the staged rows are counted without parsing them.
    found = (spark.read.text(staged) if fmt == "json" else spark.read.parquet(staged)).count()
    if found != expected:
        raise ResampleError(
            f"found {found} of the {expected} selected documents in the raw data, so nothing was written to "
            f"{out_dir}; the raw data changed since scoring (ids missing or duplicated): rerun the score stage"
        )
    if table:
        write_table(spark.read.parquet(staged), table, table_mode, "resample.out_dir")
    else:
        publish_folder(spark, staged, out_dir, fmt)
    return found


def resample_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    """Reads the scores (``<run_dir>/scores`` or resample.scores), writes ``<run_dir>/selection`` (ids,
    keys) and the selected documents (or chunks)."""
    inputs = input_fingerprint(spark, config)
    if not config.resample.scores:
        require_stage(spark, config, "score", inputs)
    settings = config.resample
    selection_dir = stage_dir(config, "resample")
    out_dir = default_out_dir(config)
    table = output_table(out_dir)
    if table and (force or not stage_complete(spark, config, "resample", inputs)):
        require_writable_table(spark, table, settings.table_mode, "resample.out_dir")

    def work() -> dict[str, Any]:
        # A selection made again makes the earlier output and report stale, whatever happens next.
        invalidate_outputs(spark, config)
        scores = open_scores(spark, config)
        columns = weight_columns(spark, config, scores)
        proportions = None
        if not settings.scores:
            if not read_record(spark, stage_dir(config, "score")).get("ids_checked"):  # scored by an older version
                check_ids(scores.select(ID), f"scores in {stage_dir(config, 'score')}")
            proportions = DSIRModel.load(spark, stage_dir(config, "fit")).target_proportions
        else:
            check_ids(scores.select(ID), f"resample.scores {settings.scores}")
        selection, summary = select(
            scores,
            columns,
            settings.num_to_sample,
            proportions=proportions,
            min_example_length=settings.min_example_length,
            seed=settings.seed,
            top_k=settings.top_k,
        )
        raw = good_rows(open_dataset(spark, config, config.raw))
        if is_chunked(scores):
            raw = expand_chunks(raw, scores.join(selection.select(ID), on=ID), config.raw)
        written = write_selection(
            selection, raw, selection_dir, out_dir,
            expected=settings.num_to_sample, output_format=settings.output_format,
            add_dsir_columns=settings.add_dsir_columns, generated_ids=config.raw.id_col is None,
            table_mode=settings.table_mode,
        )
        log.info("stage resample: selected by %s of %s", columns, scores_location(config))
        return {**summary, "out_dir": out_dir, "output_format": settings.output_format,
                "weight_columns": columns, "scores": scores_location(config),
                "length_correction": None if settings.scores else config.score.length_correction,
                "chunks": is_chunked(scores), "rows_in": summary["documents"], "rows_out": written}

    return run_stage(spark, "resample", selection_dir, stage_settings(config, "resample", inputs), work, force)
