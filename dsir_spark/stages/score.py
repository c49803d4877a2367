"""Score stage: every raw document's token count and log importance weight(s), as Parquet."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from dsir_spark.config import RunConfig
from dsir_spark.io import documents, read_dataset
from dsir_spark.model import DSIRModel
from dsir_spark.rundir import require_stage, stage_dir, stage_settings
from dsir_spark.stages.runner import run_stage


def score_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    require_stage(spark, config, "fit")
    raw = read_dataset(spark, config.raw)
    out = stage_dir(config, "score")

    def work() -> dict[str, Any]:
        model = DSIRModel.load(spark, stage_dir(config, "fit"))
        model.transform(documents(raw)).write.mode("overwrite").parquet(out)
        rows = spark.read.parquet(out).count()
        return {"rows_in": rows, "rows_out": rows, "weight_columns": model.weight_columns()}

    return run_stage(spark, "score", out, stage_settings(config, "score"), work, force)
