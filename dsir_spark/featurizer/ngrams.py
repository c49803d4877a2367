"""What hashed buckets stand for: the n-gram strings behind them, and which of them move a document's
log weight. Hashing hides the n-grams; these tables and explanations bring them back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.features import make_featurizer, ngram_strings, requested_implementation

BUCKET, NGRAM, COUNT = "bucket", "ngram", "count"
STRINGS_PER_BUCKET = 3


class NgramTally:
    """Counts of (bucket, n-gram string) in one task, from at most ``max_chars`` characters of text (the
    first documents it is given; None: all), so a task's memory is bounded whatever the dataset's size.
    The strings only name what a bucket stands for: counted on a sample, the most frequent ones are
    the same, and the bucket counts themselves are always exact."""

    def __init__(self, config: FeatureConfig, implementation: str, max_chars: int | None = None,
                 buckets: frozenset[int] | None = None) -> None:
        self.config, self.buckets, self.chars_left = config, buckets, max_chars
        self.featurizer = make_featurizer(config, implementation)
        self.seen: Counter = Counter()

    @property
    def full(self) -> bool:
        return self.chars_left is not None and self.chars_left <= 0

    def add(self, text: str | None) -> None:
        if not text or self.full:
            return
        if self.chars_left is not None:
            self.chars_left -= len(text)
        tokens, features = self.featurizer.features(text)
        pairs = zip(features, ngram_strings(tokens, self.config.ngrams))
        self.seen.update(pairs if self.buckets is None else (p for p in pairs if p[0] in self.buckets))

    def columns(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        """(bucket, ngram, count) arrays of everything counted."""
        keys = list(self.seen)
        return (pa.array([k[0] for k in keys], pa.int32()), pa.array([k[1] for k in keys], pa.string()),
                pa.array(list(self.seen.values()), pa.int64()))


def rank_in_bucket(group: str | None = None) -> Column:
    """Each n-gram's rank in its bucket (and ``group``), most frequent first, ties by string."""
    keys = [group, BUCKET] if group else [BUCKET]
    return F.row_number().over(Window.partitionBy(*keys).orderBy(F.desc(COUNT), F.asc(NGRAM)))


def strings_by_bucket(rows: Iterable) -> dict[int, list[str]]:
    """bucket -> its n-gram strings, most frequent first, from (bucket, ngram, count) rows."""
    table: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        table.setdefault(int(row[BUCKET]), []).append((-int(row[COUNT]), row[NGRAM]))
    return {bucket: [gram for _, gram in sorted(grams)] for bucket, grams in table.items()}


def pulling_buckets(log_diff: np.ndarray, weights: np.ndarray, top: int, toward: bool) -> list[int]:
    """The ``top`` buckets that pull a document toward the target most (largest log ratio x ``weights``,
    the target's probabilities) or away from it most (most negative log ratio x ``weights``, raw's)."""
    contribution = log_diff * weights
    order = np.argsort(-contribution if toward else contribution, kind="stable")[:top]
    return [int(b) for b in order if (contribution[b] > 0 if toward else contribution[b] < 0)]


@dataclass(frozen=True)
class Contribution:
    """An n-gram's part in a document's log weight: ``count`` occurrences of ``log_ratio`` each (for the
    n-gram estimator its bucket's log ratio; for the classifier its bucket's share per occurrence)."""

    ngram: str
    bucket: int
    count: int
    log_ratio: float

    @property
    def total(self) -> float:
        return self.count * self.log_ratio


def ngram_counts(text: str | None, config: FeatureConfig) -> Counter:
    """A document's distinct (n-gram, bucket) pairs with their counts."""
    tokens, buckets = make_featurizer(config, requested_implementation()).features(text)
    return Counter(zip(ngram_strings(tokens, config.ngrams), buckets))
