"""Bucket counts of a dataset: one pass over the documents, a num_buckets-sized result.

Each Python worker featurizes its Arrow batches and emits, once per partition, the nonzero bucket
counts of everything it saw plus document, token and null-text totals. Spark sums those partial
counts by bucket; the driver receives at most num_buckets + 3 rows, never per-document data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dsir_spark.config import FeatureConfig
from dsir_spark.features import Featurizer
from dsir_spark.io import TEXT

# Totals ride along with the bucket counts under negative "buckets".
_DOCS, _TOKENS, _NULL_TEXTS = -1, -2, -3
_PARTIAL_SCHEMA = "bucket int, count long"


@dataclass(frozen=True)
class BucketCounts:
    """Counts of one dataset: ``counts[b]`` features in bucket b, and totals."""

    counts: np.ndarray
    documents: int
    tokens: int
    null_texts: int

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame({"bucket": np.arange(len(self.counts), dtype=np.int32), "count": self.counts})

    def stats(self) -> dict[str, int]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "null_texts": self.null_texts,
            "num_features": int(self.counts.sum()),
        }


def _partial_counts(config: FeatureConfig):
    def count_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = Featurizer(config)
        totals = np.zeros(config.num_buckets, dtype=np.int64)
        docs = tokens = nulls = 0
        for batch in batches:
            texts = batch.column(TEXT)
            features = featurizer.featurize(texts.to_pylist())
            totals += features.bucket_counts(config.num_buckets)
            docs += len(texts)
            nulls += texts.null_count
            tokens += int(features.num_tokens.sum())
        nonzero = np.flatnonzero(totals)
        buckets = np.concatenate([nonzero, [_DOCS, _TOKENS, _NULL_TEXTS]]).astype(np.int32)
        values = np.concatenate([totals[nonzero], [docs, tokens, nulls]]).astype(np.int64)
        yield pa.RecordBatch.from_arrays([pa.array(buckets), pa.array(values)], names=["bucket", "count"])

    return count_partition


def bucket_counts(documents: DataFrame, config: FeatureConfig) -> BucketCounts:
    """Counts of every hashed n-gram of ``documents`` (a frame with a ``text`` column)."""
    partials = documents.select(TEXT).mapInArrow(_partial_counts(config), _PARTIAL_SCHEMA)
    rows = partials.groupBy("bucket").agg(F.sum("count").alias("count")).toPandas()
    totals = dict(zip(rows["bucket"].astype(int), rows["count"].astype(np.int64)))
    counts = np.zeros(config.num_buckets, dtype=np.int64)
    real = rows[rows["bucket"] >= 0]
    counts[real["bucket"].to_numpy()] = real["count"].to_numpy()
    return BucketCounts(
        counts=counts,
        documents=int(totals.get(_DOCS, 0)),
        tokens=int(totals.get(_TOKENS, 0)),
        null_texts=int(totals.get(_NULL_TEXTS, 0)),
    )


# ---------------------------------------------------------------------------------------------- fit sample

# Characters read to estimate tokens per character before sampling.
_ESTIMATE_CHARS = 2_000_000


def _token_totals(documents: DataFrame) -> tuple[int, int]:
    """(tokens, characters) of a frame of documents, counted by the same tokenizer."""

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from dsir_spark.features import tokenize

        tokens = chars = 0
        for batch in batches:
            for text in batch.column(TEXT).to_pylist():
                tokens += len(tokenize(text))
                chars += len(text) if text else 0
        yield pa.RecordBatch.from_arrays([pa.array([tokens]), pa.array([chars])], names=["tokens", "chars"])

    row = documents.select(TEXT).mapInArrow(count, "tokens long, chars long").agg(
        F.sum("tokens").alias("tokens"), F.sum("chars").alias("chars")
    ).first()
    return int(row["tokens"] or 0), int(row["chars"] or 0)


def sample_for_fit(documents: DataFrame, num_tokens: int, seed: int) -> tuple[DataFrame, dict]:
    """A deterministic sample of about ``num_tokens`` tokens: documents whose hash of (seed, id) is small.

    Tokens never outnumber characters, so a dataset with fewer characters than the budget is used whole.
    Otherwise tokens per character are estimated on a small hashed sample and the fraction set from it.
    """
    from dsir_spark.randomness import uniform

    chars = documents.agg(F.sum(F.length(TEXT)).alias("c")).first()["c"] or 0
    if chars <= num_tokens:
        return documents, {"fraction": 1.0, "reason": "fewer characters than num_tokens_to_fit"}
    u = uniform(seed, F.col("id"), "fit-sample")
    probe_fraction = min(1.0, _ESTIMATE_CHARS / chars)
    probe_tokens, probe_chars = _token_totals(documents.where(u < F.lit(probe_fraction)))
    tokens_per_char = probe_tokens / probe_chars if probe_chars else 1.0
    estimated = chars * tokens_per_char
    fraction = min(1.0, num_tokens / estimated) if estimated else 1.0
    info = {"fraction": fraction, "estimated_tokens": int(estimated), "characters": int(chars)}
    if fraction >= 1.0:
        return documents, info
    return documents.where(u < F.lit(fraction)), info
