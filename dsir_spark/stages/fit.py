"""Fit stage: the fitted importance estimator (``fit.estimator``) from the count stage's bucket counts,
and for the classifier, from the documents too."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession

from dsir_spark.config import RunConfig
from dsir_spark.estimators.base import ImportanceModel
from dsir_spark.estimators.classifier import LogisticModel, fit_logistic
from dsir_spark.estimators.ngram_ratio import DSIRModel, fit_model
from dsir_spark.featurizer.counts import BucketCounts
from dsir_spark.run.directory import (
    counts_path,
    input_fingerprint,
    load_counts,
    open_dataset,
    require_stage,
    stage_dir,
    stage_settings,
)
from dsir_spark.stages.runner import run_stage
from dsir_spark.storage.io import documents

log = logging.getLogger("dsir_spark")


def _counts(spark: SparkSession, config: RunConfig) -> tuple[BucketCounts, list[BucketCounts]]:
    """The count stage's counts of raw and of each target."""
    num_buckets = config.features.num_buckets
    return (load_counts(spark, counts_path(config, config.raw), num_buckets),
            [load_counts(spark, counts_path(config, t), num_buckets) for t in config.targets])


def fit_from_counts(spark: SparkSession, config: RunConfig) -> DSIRModel:
    raw, targets = _counts(spark, config)
    model = fit_model(raw, targets, [t.name for t in config.targets], config.features, config.fit)
    model.metadata["num_tokens_to_fit"] = config.fit.num_tokens_to_fit
    return model


def fit_classifier(spark: SparkSession, config: RunConfig) -> LogisticModel:
    raw_counts, target_counts = _counts(spark, config)
    return fit_logistic(documents(open_dataset(spark, config, config.raw)),
                        [documents(open_dataset(spark, config, t)) for t in config.targets],
                        raw_counts, target_counts, [t.name for t in config.targets], config.features, config.fit)


FITS = {"ngram_ratio": fit_from_counts, "logistic": fit_classifier}


def fit_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    inputs = input_fingerprint(spark, config)
    require_stage(spark, config, "count", inputs)

    def work() -> dict[str, Any]:
        model: ImportanceModel = FITS[config.fit.estimator](spark, config)
        model.save(spark, stage_dir(config, "fit"))
        training = model.metadata.get("training", {})  # the classifiers' documents and held-out measures
        warnings = model.uniform_weight_warnings() + [f"classifier of {name}: {warning}" for name, r in
                                                      training.items() for warning in r.get("warnings", [])]
        for warning in warnings:
            log.warning("stage fit: %s", warning)
        record = {"rows_in": config.features.num_buckets * (1 + len(config.targets)),
                  "rows_out": config.features.num_buckets, "target_proportions": model.target_proportions,
                  "estimator": model.estimator, "warnings": warnings}
        if training:
            record["training"] = training
        return record

    return run_stage(spark, "fit", stage_dir(config, "fit"), stage_settings(config, "fit", inputs), work, force)
