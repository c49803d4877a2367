"""A discriminative importance estimator (``fit.estimator: logistic``): per target distribution, a
class-balanced L2 logistic regression that tells its documents from raw ones, on the same hashed n-gram
buckets as the reference's estimator.

Features: per document, log(1 + count) of each bucket (sublinear term frequency: a word seen 20 times
is more evidence than one seen once, not 20 times more; it keeps long documents from dominating
without a per-document normalization, which would throw away how much text there is).

Why a density ratio: with the two classes weighted to equal totals, the classifier's odds are
p_target(x) / p_raw(x) times the ratio of the class totals (1 here, recorded as ``prior_log_ratios``
and subtracted all the same). So ``log_weight`` = intercept + coefficients . log1p(counts) - prior log
ratio is a log density ratio, as DSIR's is, and goes through resampling, length corrections and the
report unchanged. Trained with Spark MLlib's LogisticRegression (L-BFGS, distributed) on sparse vectors:
``standardization=False`` so that the L2 penalty treats every bucket alike, as the design matrix is
already on one scale; the objective is the weighted mean log loss + regularization / 2 * |w|^2.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, LongType, StructField, StructType

from dsir_spark.columns import TEXT
from dsir_spark.config import FeatureConfig, FitConfig
from dsir_spark.estimators.base import (
    FitError,
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
from dsir_spark.featurizer.features import log1p, make_featurizer, requested_implementation
from dsir_spark.featurizer.lengths import NONE
from dsir_spark.featurizer.ngrams import Contribution, ngram_counts
from dsir_spark.randomness import uniform
from dsir_spark.storage.records import write_json, write_table

LABEL, HELD_OUT, FEATURES, WEIGHT, ORDER = "label", "held_out", "features", "weight", "order"
log = logging.getLogger("dsir_spark")
# Below this many training documents of a class, the fit is warned of (see _training_warnings).
MIN_TRAINING_DOCUMENTS = 10
_VECTORS = StructType([StructField(LABEL, DoubleType(), False), StructField(HELD_OUT, BooleanType(), False),
                       StructField(ORDER, LongType(), False), StructField(FEATURES, VectorUDT(), False)])
MAX_ITERATIONS, TOLERANCE = 200, 1e-9


@dataclass
class LogisticModel(ImportanceModel):
    """log_weight[t] = intercepts[t] - prior_log_ratios[t] + coefficients[t] . log1p(bucket counts)."""

    estimator: ClassVar[str] = "logistic"
    bucket_weight_name: ClassVar[str] = "classifier coefficient"

    features: FeatureConfig
    coefficients: np.ndarray  # rows x num_buckets
    intercepts: np.ndarray
    prior_log_ratios: np.ndarray
    target_names: list[str]
    separate_targets: bool = False
    target_proportions: list[float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def scoring_table(self) -> ScoringTable:
        return ScoringTable(self.coefficients, self.intercepts - self.prior_log_ratios, sublinear=True)

    def bucket_weights(self) -> np.ndarray:
        return self.coefficients

    def contributions(self, text: str | None, row: int) -> list[Contribution]:
        """A bucket with c occurrences adds coefficient x log1p(c); each of its n-grams takes its share per
        occurrence (coefficient x log1p(c) / c), so the totals add up to the log weight minus its constant."""
        counted = ngram_counts(text, self.features)
        per_bucket: dict[int, int] = defaultdict(int)
        for (_, bucket), n in counted.items():
            per_bucket[bucket] += n
        coefficients = self.coefficients[row]

        def share(bucket: int) -> float:
            c = per_bucket[bucket]
            return float(coefficients[bucket] * log1p(np.array([c]))[0] / c)

        found = [Contribution(gram, int(bucket), n, share(bucket)) for (gram, bucket), n in counted.items()]
        return sorted(found, key=lambda c: (-abs(c.total), c.ngram))

    def length_correction_warning(self, correction: str) -> str | None:
        if correction == NONE:
            return None
        return (f"score.length_correction: {correction} corrects a sum over n-grams, whose size grows with the "
                "document's length; the classifier's log-odds already weighs length (log1p counts), so the "
                "correction can outweigh what it learned (measured: benchmarks/bench_selection.py); consider none")

    def to_json(self) -> dict[str, Any]:
        return {**self.header(), "intercepts": self.intercepts.tolist(),
                "prior_log_ratios": self.prior_log_ratios.tolist(), **self.metadata}

    def save(self, spark: SparkSession, path: str) -> None:
        """Writes ``<path>/coefficients/`` (Parquet: bucket, coefficient[_t]) and then ``<path>/model.json``."""
        table = {"bucket": np.arange(self.features.num_buckets, dtype=np.int32)}
        table.update(zip(target_columns("coefficient", self.separate_targets, len(self.coefficients)),
                         self.coefficients))
        write_table(spark, f"{path}/coefficients", pd.DataFrame(table))
        write_json(spark, f"{path}/model.json", self.to_json())

    @classmethod
    def from_saved(cls, spark: SparkSession, path: str, meta: dict[str, Any], features: FeatureConfig) -> LogisticModel:
        table = read_bucket_table(spark, f"{path}/coefficients")
        fields = saved_fields(meta, own=("intercepts", "prior_log_ratios"))
        columns = target_columns("coefficient", fields["separate_targets"], len(fields["target_names"]))
        return cls(features=features,
                   coefficients=np.stack([table[name].to_numpy(dtype=np.float64) for name in columns]),
                   intercepts=np.asarray(meta["intercepts"], dtype=np.float64),
                   prior_log_ratios=np.asarray(meta["prior_log_ratios"], dtype=np.float64), **fields)


# ---------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _Vectorizer:
    """Documents (text, label, held_out) to MLlib sparse vectors of log1p(bucket counts), on the workers."""

    config: FeatureConfig
    implementation: str

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = make_featurizer(self.config, self.implementation)
        for batch in batches:
            sparse = featurizer.sparse_counts(batch.column(TEXT).to_pylist())
            offsets = pa.array(sparse.indptr.astype(np.int32))
            vectors = pa.StructArray.from_arrays(
                [pa.array(np.zeros(batch.num_rows, dtype=np.int8)),  # 0: a sparse vector
                 pa.array(np.full(batch.num_rows, self.config.num_buckets, dtype=np.int32)),
                 pa.ListArray.from_arrays(offsets, pa.array(sparse.buckets)),
                 pa.ListArray.from_arrays(offsets, pa.array(log1p(sparse.counts)))],
                names=["type", "size", "indices", "values"])
            passed = [batch.column(name) for name in (LABEL, HELD_OUT, ORDER)]
            yield pa.RecordBatch.from_arrays(passed + [vectors], names=[LABEL, HELD_OUT, ORDER, FEATURES])


def labeled(documents: DataFrame, label: float, fraction: float, fit: FitConfig, salt: str) -> DataFrame:
    """A seeded sample (``fraction`` of the documents with a text) as training rows: text, label, whether
    the row is held out for measuring, and its place in the training order. All three come from hashes
    of the text, not the id: derived ids name the file, and the model should not change when the files
    move (or are split differently); documents that tie are the same text."""
    rows = documents.where(F.col(TEXT).isNotNull())
    if fraction < 1:
        rows = rows.where(uniform(fit.sample_seed, F.col(TEXT), salt) < F.lit(fraction))
    held = uniform(fit.sample_seed, F.col(TEXT), "held-out") < F.lit(fit.held_out)
    return rows.select(TEXT, F.lit(label).alias(LABEL), held.alias(HELD_OUT),
                       F.xxhash64(F.lit(salt), F.col(TEXT)).alias(ORDER))


@dataclass(frozen=True)
class Classifier:
    coefficients: np.ndarray
    intercept: float
    prior_log_ratio: float
    record: dict[str, Any]


def train(rows: DataFrame, features: FeatureConfig, fit: FitConfig) -> Classifier:
    """A class-balanced L2 logistic regression on ``labeled`` rows (the held-out ones only measure it).

    The rows are featurized in parallel, then gathered into one partition in a fixed order: MLlib sums
    the partitions' gradients in the order their tasks finish, so only one partition gives the same
    coefficients bit for bit on any cluster and partitioning. The sample is bounded (fit.negatives +
    fit.positives documents), so one task per L-BFGS iteration is fast enough."""
    vectorized = rows.mapInArrow(_Vectorizer(features, requested_implementation()), _VECTORS)
    vectors = vectorized.repartition(1).sortWithinPartitions(ORDER, LABEL).cache()
    try:
        sizes = {(r[LABEL], r[HELD_OUT]): r["count"] for r in vectors.groupBy(LABEL, HELD_OUT).count().collect()}
        positives, negatives = sizes.get((1.0, False), 0), sizes.get((0.0, False), 0)
        if not positives or not negatives:
            raise FitError(f"the classifier has {positives} target and {negatives} raw documents to learn from; "
                           "it needs both (check the datasets, and fit.held_out)")
        total = positives + negatives
        # Each class weighs half of the total, so the class totals' log ratio is 0 (kept for the record).
        positive_weight, negative_weight = total / (2 * positives), total / (2 * negatives)
        prior_log_ratio = math.log(positive_weight * positives / (negative_weight * negatives))
        weighted = vectors.where(~F.col(HELD_OUT)).withColumn(
            WEIGHT, F.when(F.col(LABEL) == 1.0, F.lit(positive_weight)).otherwise(F.lit(negative_weight)))
        model = LogisticRegression(featuresCol=FEATURES, labelCol=LABEL, weightCol=WEIGHT,
                                   regParam=fit.regularization, elasticNetParam=0.0, standardization=False,
                                   fitIntercept=True, maxIter=MAX_ITERATIONS, tol=TOLERANCE).fit(weighted)
        coefficients, intercept = model.coefficients.toArray().astype(np.float64), float(model.intercept)
        iterations = int(model.summary.totalIterations) if model.hasSummary else None
        held = vectors.where(F.col(HELD_OUT)).select(LABEL, FEATURES).collect()
    finally:
        vectors.unpersist()
    margins = np.array([intercept + float(row[FEATURES].dot(coefficients)) for row in held])
    labels = np.array([row[LABEL] for row in held])
    record = {"positives": positives, "negatives": negatives, "iterations": iterations,
              "held_out": held_out_metrics(labels, margins)}
    warnings = _training_warnings(positives, negatives, record["held_out"], fit)
    if warnings:
        record["warnings"] = warnings
    return Classifier(coefficients, intercept, prior_log_ratio, record)


def _training_warnings(positives: int, negatives: int, held_out: dict[str, Any], fit: FitConfig) -> list[str]:
    """What makes a classifier's weights or its measure doubtful: too few documents of a class to learn
    from, or no held-out document of a class (so no AUC), each said with why."""
    warnings = []
    for kind, learned, setting in (("target", positives, "positives"), ("raw", negatives, "negatives")):
        if learned < MIN_TRAINING_DOCUMENTS:
            warnings.append(f"the classifier learned from {learned} {kind} document(s), fewer than "
                            f"{MIN_TRAINING_DOCUMENTS}: its weights then say more about fit.regularization than about "
                            f"the {kind} text; give more {kind} documents (fit.{setting} caps how many are used)")
    if held_out["auc"] is None:
        missing = "target" if not held_out["positives"] else "raw"
        warnings.append(f"held-out AUC not measured: no {missing} document was held out (fit.held_out="
                        f"{fit.held_out} of the sample, which held {positives if missing == 'target' else negatives} "
                        f"{missing} documents to learn from); raise fit.held_out or give more {missing} documents")
    return warnings


def held_out_metrics(labels: np.ndarray, margins: np.ndarray) -> dict[str, Any]:
    """ROC AUC of the margins and the class-balanced mean log loss (as trained), on held-out documents."""
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    metrics: dict[str, Any] = {"positives": positives, "negatives": negatives, "auc": None, "log_loss": None}
    if positives and negatives:
        metrics["auc"] = roc_auc(labels, margins)
        # log loss of p = sigmoid(m): log(1 + exp(-m)) for a positive, log(1 + exp(m)) for a negative
        losses = np.logaddexp(0.0, np.where(labels == 1, -margins, margins))
        metrics["log_loss"] = float((losses[labels == 1].mean() + losses[labels == 0].mean()) / 2)
    return metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half): the
    Mann-Whitney U statistic over both classes' sizes, from average ranks."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average rank of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(raw: DataFrame, targets: Sequence[DataFrame], raw_counts: BucketCounts,
                 target_counts: Sequence[BucketCounts], target_names: Sequence[str], features: FeatureConfig,
                 fit: FitConfig) -> LogisticModel:
    """One classifier per target distribution (each target when separate, else all targets together)
    against about ``fit.negatives`` raw documents; ``raw`` and ``targets`` are (id, text) frames and the
    counts their count-stage totals (which size the samples without another pass)."""
    require_tokens(raw_counts, target_counts, target_names)
    negatives = labeled(raw, 0.0, _fraction(fit.negatives, [raw_counts]), fit, "negatives")
    groups = [[t] for t in range(len(targets))] if fit.separate_targets else [list(range(len(targets)))]
    classifiers, records = [], {}
    for group in groups:
        fraction = _fraction(fit.positives, [target_counts[t] for t in group])
        positives = [labeled(targets[t], 1.0, fraction, fit, "positives") for t in group]
        rows = negatives
        for frame in positives:
            rows = rows.unionByName(frame)
        classifier = train(rows, features, fit)
        classifiers.append(classifier)
        records[", ".join(target_names[t] for t in group)] = classifier.record
    return LogisticModel(
        features=features,
        coefficients=np.stack([c.coefficients for c in classifiers]),
        intercepts=np.array([c.intercept for c in classifiers]),
        prior_log_ratios=np.array([c.prior_log_ratio for c in classifiers]),
        target_names=list(target_names),
        separate_targets=fit.separate_targets,
        target_proportions=target_proportions(target_counts, fit),
        metadata={"regularization": fit.regularization, "negatives": fit.negatives, "positives": fit.positives,
                  "held_out": fit.held_out, "training": records,
                  **count_stats(raw_counts, target_counts, target_names)},
    )


def _fraction(wanted: int, counts: Sequence[BucketCounts]) -> float:
    documents = sum(c.documents - c.null_texts for c in counts)
    return 1.0 if documents <= wanted else wanted / documents
