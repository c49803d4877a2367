"""dsir-spark: DSIR (Xie et al., NeurIPS 2023) data selection as a distributed Spark pipeline."""

from __future__ import annotations

__version__ = "0.1.0"

from dsir_spark.config import (  # noqa: E402
    ConfigError,
    DatasetConfig,
    FeatureConfig,
    FitConfig,
    ResampleConfig,
    RunConfig,
    load_config,
)
from dsir_spark.model import DSIRModel  # noqa: E402
from dsir_spark.dsir import HashedNgramDSIR  # noqa: E402

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
    "HashedNgramDSIR",
]
