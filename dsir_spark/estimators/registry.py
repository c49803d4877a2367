"""The importance estimators by name (``fit.estimator``), and loading whichever one a run directory holds."""

from __future__ import annotations

from pyspark.sql import SparkSession

from dsir_spark.estimators.base import ImportanceModel, read_header
from dsir_spark.estimators.classifier import LogisticModel
from dsir_spark.estimators.ngram_ratio import DSIRModel

MODELS: dict[str, type[ImportanceModel]] = {DSIRModel.estimator: DSIRModel, LogisticModel.estimator: LogisticModel}


def load_model(spark: SparkSession, path: str) -> ImportanceModel:
    """The model saved at ``path`` by the fit stage (or a model's ``save``), of its own estimator."""
    meta, features = read_header(spark, path)
    # Models written before estimators had names are the reference's.
    return MODELS[meta.get("estimator", DSIRModel.estimator)].from_saved(spark, path, meta, features)
