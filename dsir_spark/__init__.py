"""dsir-spark: DSIR (Xie et al., NeurIPS 2023) data selection as a distributed Spark pipeline.

This module only hands on the public names; nothing inside the package imports it.
"""

from __future__ import annotations

from dsir_spark.config import (
    ConfigError,
    DatasetConfig,
    FeatureConfig,
    FitConfig,
    ResampleConfig,
    RunConfig,
    load_config,
)
from dsir_spark.dsir import HashedNgramDSIR
from dsir_spark.estimators import load_model
from dsir_spark.logistic import LogisticModel
from dsir_spark.model import DSIRModel
from dsir_spark.version import __version__

__all__ = [
    "__version__",
    "ConfigError",
    "DatasetConfig",
    "FeatureConfig",
    "FitConfig",
    "ResampleConfig",
    "RunConfig",
    "load_config",
    "DSIRModel",
    "LogisticModel",
    "load_model",
    "HashedNgramDSIR",
]
