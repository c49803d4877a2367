"""dsir-spark: DSIR (Xie et al., NeurIPS 2023) data selection as a distributed Spark pipeline.

This module only hands on the public names; nothing inside the package imports it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from dsir_spark.version import __version__

# Public name -> the module that defines it, imported on first use: a Python worker that unpickles a
# function of dsir_spark.counts then imports what that needs, not the whole package (MLlib, pandas ...).
_PUBLIC = {
    "ConfigError": "dsir_spark.config",
    "DatasetConfig": "dsir_spark.config",
    "FeatureConfig": "dsir_spark.config",
    "FitConfig": "dsir_spark.config",
    "ResampleConfig": "dsir_spark.config",
    "RunConfig": "dsir_spark.config",
    "load_config": "dsir_spark.config",
    "DSIRModel": "dsir_spark.model",
    "LogisticModel": "dsir_spark.logistic",
    "load_model": "dsir_spark.estimators",
    "HashedNgramDSIR": "dsir_spark.dsir",
}

if TYPE_CHECKING:
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


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'dsir_spark' has no attribute {name!r}")


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
