"""Score stage: every raw document's token count and log importance weight(s), as Parquet."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import DOC_ID, ID
from dsir_spark.config import RunConfig
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.features import compiled_available, requested_implementation
from dsir_spark.run.directory import (
    input_fingerprint,
    model_identity,
    model_path,
    open_dataset,
    read_record,
    require_model,
    require_stage,
    stage_dir,
    stage_files,
    stage_settings,
)
from dsir_spark.stages.runner import run_stage
from dsir_spark.storage.io import check_ids, documents, id_source, write_table
from dsir_spark.storage.records import overwrite

log = logging.getLogger("dsir_spark")


def score_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    inputs = input_fingerprint(spark, config)
    saved = require_model(spark, config) if config.fit.model else None  # a model from another run
    if saved is None:
        require_stage(spark, config, "fit", inputs)
    raw = open_dataset(spark, config, config.raw)
    out = stage_dir(config, "score")

    # Workers use the compiled featurizer where it is built (auto), so this is the driver's view.
    featurizer = {"requested": requested_implementation(), "compiled_on_driver": compiled_available()}
    log.debug("stage score: featurizer %s", featurizer)

    # The count stage checks the raw ids in its pass; counts made by an older version did not.
    ids_checked = bool((read_record(spark, stage_dir(config, "count")) or {}).get("ids_checked"))

    chunking = config.chunking
    min_tokens = chunking.min_tokens if chunking.min_tokens is not None else config.resample.min_example_length

    def work() -> dict[str, Any]:
        model = load_model(spark, model_path(config))
        correction = config.score.length_correction
        warning = model.length_correction_warning(correction)
        if warning:
            log.warning("stage score: %s", warning)
        scores_of = model.transform(documents(raw), length_correction=correction, chunk_tokens=chunking.tokens,
                        chunk_min_tokens=min_tokens)
        overwrite(scores_of).parquet(out)
        scores = spark.read.parquet(out)
        if not ids_checked:  # checked once, so that resampling can trust the ids
            check_ids(scores.select(ID), f"raw dataset ({', '.join(config.raw.paths)}), {id_source(config.raw)}")
        rows = scores.count()
        if config.score.table:
            write_table(scores, config.score.table, config.score.table_mode, "score.table")
        record = {"rows_in": rows, "rows_out": rows, "weight_columns": model.weight_columns(),
                  **({"model": {**model_identity(config, spark), "estimator": saved.get("estimator", "ngram_ratio"),
                                "dsir_spark": saved.get("version")}} if saved else {}),
                  "featurizer": featurizer, "ids_checked": True, "table": config.score.table,
                  "length_correction": correction, "selection_columns": model.selection_columns(correction),
                  "files": stage_files(spark, config, "score"),
                  "warnings": [warning] if warning else []}
        if chunking.tokens:
            chunked = scores.agg(F.countDistinct(DOC_ID).alias("documents")).first()
            record["chunking"] = {"tokens": chunking.tokens, "min_tokens": min_tokens, "chunks": rows,
                                  "documents_with_chunks": int(chunked["documents"])}
        return record

    return run_stage(spark, "score", out, stage_settings(config, "score", inputs), work, force)
