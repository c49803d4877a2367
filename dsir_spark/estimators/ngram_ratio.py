"""The reference's importance estimator: ``log_diff`` per bucket, with fit from counts and save/load.

Like pyspark.ml's Estimator -> Model: ``fit_model`` turns bucket counts into a ``DSIRModel``;
``DSIRModel.transform(documents)`` scores documents (see dsir_spark.estimators.base, shared with the other
estimators); ``save``/``load`` use Parquet + JSON, not pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from dsir_spark.config import FeatureConfig, FitConfig
from dsir_spark.estimators.base import (
    ImportanceModel,
    ScoringTable,
    count_stats,
    read_bucket_table,
    require_tokens,
    saved_fields,
    target_columns,
    target_proportions,
)
from dsir_spark.featurizer.counts import BucketCounts
from dsir_spark.featurizer.ngrams import Contribution, ngram_counts
from dsir_spark.storage.records import write_json, write_table

EPS = 1e-8


def normalize(counts: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """Counts to probabilities, with an optional pseudo-count added to every bucket."""
    if smoothing == 0:
        return counts / counts.sum()
    return (counts + smoothing) / (counts.sum() + smoothing * len(counts))


@dataclass
class DSIRModel(ImportanceModel):
    """log_diff[t, b] = log(p_target_t[b] + 1e-8) - log(p_raw[b] + 1e-8), one row per target distribution."""

    estimator: ClassVar[str] = "ngram_ratio"
    bucket_weight_name: ClassVar[str] = "log ratio"

    features: FeatureConfig
    log_diff: np.ndarray
    raw_probs: np.ndarray
    target_probs: np.ndarray
    target_names: list[str]
    separate_targets: bool = False
    target_proportions: list[float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def scoring_table(self) -> ScoringTable:
        return ScoringTable(self.log_diff)

    def bucket_weights(self) -> np.ndarray:
        return self.log_diff

    def contributions(self, text: str | None, row: int) -> list[Contribution]:
        """Each n-gram adds its bucket's log ratio once per occurrence."""
        log_diff = self.log_diff[row]
        found = [Contribution(gram, int(bucket), n, float(log_diff[bucket]))
                 for (gram, bucket), n in ngram_counts(text, self.features).items()]
        return sorted(found, key=lambda c: (-abs(c.total), c.ngram))

    # ------------------------------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {**self.header(), **self.metadata}

    def to_pandas(self) -> pd.DataFrame:
        table = {"bucket": np.arange(self.features.num_buckets, dtype=np.int32), "raw_prob": self.raw_probs}
        rows = len(self.log_diff)
        for name, values in (("log_diff", self.log_diff), ("target_prob", self.target_probs)):
            table.update(zip(target_columns(name, self.separate_targets, rows), values))
        return pd.DataFrame(table)

    def save(self, spark: SparkSession, path: str) -> None:
        """Writes ``<path>/log_diff/`` (Parquet) and then ``<path>/model.json``."""
        write_table(spark, f"{path}/log_diff", self.to_pandas())
        write_json(spark, f"{path}/model.json", self.to_json())

    @classmethod
    def from_saved(cls, spark: SparkSession, path: str, meta: dict[str, Any], features: FeatureConfig) -> DSIRModel:
        table = read_bucket_table(spark, f"{path}/log_diff")
        fields = saved_fields(meta)

        def rows(name: str) -> np.ndarray:
            columns = target_columns(name, fields["separate_targets"], len(fields["target_names"]))
            return np.stack([table[column].to_numpy() for column in columns])

        return cls(features=features, log_diff=rows("log_diff"), raw_probs=table["raw_prob"].to_numpy(),
                   target_probs=rows("target_prob"), **fields)


def fit_model(
    raw: BucketCounts,
    targets: Sequence[BucketCounts],
    target_names: Sequence[str],
    features: FeatureConfig,
    fit: FitConfig,
) -> DSIRModel:
    """The reference's fit_importance_estimator, from bucket counts."""
    require_tokens(raw, targets, target_names)
    raw_probs = normalize(raw.counts)
    smoothing = fit.target_laplace_smoothing
    if fit.separate_targets:
        target_probs = np.stack([normalize(t.counts, smoothing) for t in targets])
    else:
        total = np.sum([t.counts for t in targets], axis=0)
        target_probs = normalize(total, smoothing)[np.newaxis, :]
    log_diff = np.log(target_probs + EPS) - np.log(raw_probs + EPS)
    return DSIRModel(
        features=features,
        log_diff=log_diff,
        raw_probs=raw_probs,
        target_probs=target_probs,
        target_names=list(target_names),
        separate_targets=fit.separate_targets,
        target_proportions=target_proportions(targets, fit),
        metadata={
            "target_laplace_smoothing": smoothing,
            **count_stats(raw, targets, target_names),
        },
    )
