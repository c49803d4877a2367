"""dsir-spark: DSIR (Xie et al., NeurIPS 2023) data selection as a distributed Spark pipeline.

This module only hands on the public names; nothing inside the package imports it.
"""

from __future__ import annotations

from importlib import import_module

from dsir_spark.version import __version__

# Public name -> the module that defines it, imported on first use: a Python worker that unpickles a
# function of dsir_spark.featurizer.counts then imports what that needs, not the whole package (MLlib, pandas ...).
_PUBLIC = {
    "ConfigError": "dsir_spark.config",
    "DatasetConfig": "dsir_spark.config",
    "FeatureConfig": "dsir_spark.config",
    "FitConfig": "dsir_spark.config",
    "ResampleConfig": "dsir_spark.config",
    "RunConfig": "dsir_spark.config",
    "load_config": "dsir_spark.config",
    "DSIRModel": "dsir_spark.estimators.ngram_ratio",
    "LogisticModel": "dsir_spark.estimators.classifier",
    "load_model": "dsir_spark.estimators.registry",
    "HashedNgramDSIR": "dsir_spark.dsir",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'dsir_spark' has no attribute {name!r}")


__all__ = ["__version__", *_PUBLIC]
