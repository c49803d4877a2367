"""Fit stage: the log-ratio table (``log_diff``) from the count stage's bucket counts."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession

from dsir_spark.config import RunConfig
from dsir_spark.model import DSIRModel, fit_model, uniform_weight_warnings
from dsir_spark.rundir import counts_path, input_fingerprint, load_counts, require_stage, stage_dir, stage_settings
from dsir_spark.stages.runner import run_stage

log = logging.getLogger("dsir_spark")


def fit_from_counts(spark: SparkSession, config: RunConfig) -> DSIRModel:
    num_buckets = config.features.num_buckets
    raw = load_counts(spark, counts_path(config, config.raw), num_buckets)
    targets = [load_counts(spark, counts_path(config, t), num_buckets) for t in config.targets]
    model = fit_model(raw, targets, [t.name for t in config.targets], config.features, config.fit)
    model.metadata["num_tokens_to_fit"] = config.fit.num_tokens_to_fit
    return model


def fit_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    inputs = input_fingerprint(spark, config)
    require_stage(spark, config, "count", inputs)

    def work() -> dict[str, Any]:
        model = fit_from_counts(spark, config)
        model.save(spark, stage_dir(config, "fit"))
        warnings = uniform_weight_warnings(model, [t.name for t in config.targets])
        for warning in warnings:
            log.warning("stage fit: %s", warning)
        return {"rows_in": config.features.num_buckets * (1 + len(config.targets)),
                "rows_out": config.features.num_buckets, "target_proportions": model.target_proportions,
                "warnings": warnings}

    return run_stage(spark, "fit", stage_dir(config, "fit"), stage_settings(config, "fit", inputs), work, force)
