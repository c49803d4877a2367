"""What every importance estimator's fitted model shares: scoring documents on Spark, weight columns, the
length-correction lambdas and the model.json header. The estimators (the reference's n-gram log ratio in
``ngram_ratio``, the classifier in ``classifier``) differ only in their ``ScoringTable``, their n-gram
contributions and how they are saved.

A log weight is always ``offset[t] + sum over the document's buckets b of table[t, b] * f(count of b)``
with f the identity (``sublinear`` false: summed in feature order, as the reference) or log1p.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from dsir_spark.columns import CHAR_END, CHAR_START, CHUNK, DOC_ID, ID, LOG_WEIGHT, NUM_TOKENS, TEXT
from dsir_spark.config import FeatureConfig, FitConfig
from dsir_spark.featurizer.counts import BucketCounts
from dsir_spark.featurizer.features import HASH_DEFINITIONS, ChunkScores, make_featurizer, requested_implementation
from dsir_spark.featurizer.lengths import NONE, POISSON, correct, corrected_column, mean_tokens
from dsir_spark.featurizer.ngrams import Contribution
from dsir_spark.storage.records import read_json, read_table
from dsir_spark.version import __version__

if TYPE_CHECKING:  # pandas only on the driver: Python workers import this module, and pandas costs each 1-2 s
    import pandas as pd



class FitError(ValueError):
    """The data cannot give a model (an empty target, an empty raw dataset, one class only)."""


@dataclass(frozen=True)
class ScoringTable:
    """How a model turns a document's bucket counts into log weights (one row per weight column)."""

    table: np.ndarray  # rows x num_buckets, float64
    offsets: np.ndarray | None = None  # one constant per row, added after the sum
    sublinear: bool = False  # log1p of each bucket's count instead of the count

    def score(self, featurizer, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(token counts, log weights[t, d]) of documents."""
        num_tokens, sums = featurizer.score(texts, self.table, self.sublinear)
        return num_tokens, self._offset(sums)

    def score_chunks(self, featurizer, texts: Sequence[str | None], chunk_tokens: int, min_tokens: int) -> ChunkScores:
        chunks = featurizer.score_chunks(texts, self.table, chunk_tokens, min_tokens, self.sublinear)
        return replace(chunks, sums=self._offset(chunks.sums))

    def _offset(self, sums: np.ndarray) -> np.ndarray:
        return sums if self.offsets is None else sums + self.offsets[:, np.newaxis]


class ImportanceModel:
    """The interface of a fitted estimator (attributes: ``features``, ``target_names``,
    ``separate_targets``, ``target_proportions``, ``metadata`` with the count stage's stats)."""

    estimator: ClassVar[str]
    bucket_weight_name: ClassVar[str]  # what bucket_weights() are, in messages
    features: FeatureConfig
    target_names: list[str]
    separate_targets: bool
    target_proportions: list[float] | None
    metadata: dict[str, Any]

    # --------------------------------------------------------------------- what each estimator defines

    def scoring_table(self) -> ScoringTable:
        raise NotImplementedError

    def bucket_weights(self) -> np.ndarray:
        """Each bucket's effect per weight column (rows x num_buckets), for the report's n-gram lists."""
        raise NotImplementedError

    def contributions(self, text: str | None, row: int) -> list[Contribution]:
        """Every distinct n-gram of a document with its share of weight column ``row``, largest first."""
        raise NotImplementedError

    def save(self, spark: SparkSession, path: str) -> None:
        raise NotImplementedError

    def length_correction_warning(self, correction: str) -> str | None:
        """Why a length correction may not suit this estimator's weights, or None."""
        return None

    @classmethod
    def from_saved(cls, spark: SparkSession, path: str, meta: dict[str, Any], features: FeatureConfig):
        """The model saved at ``path``, whose model.json (``meta``) was read already."""
        raise NotImplementedError

    @classmethod
    def load(cls, spark: SparkSession, path: str):
        meta, features = read_header(spark, path)
        if meta.get("estimator", "ngram_ratio") != cls.estimator:
            raise FitError(f"the model at {path} is a {meta['estimator']!r} model, not {cls.estimator!r}; "
                           "load it with dsir_spark.estimators.registry.load_model")
        return cls.from_saved(spark, path, meta, features)

    # ------------------------------------------------------------------------------------------ shared

    def weight_columns(self) -> list[str]:
        """``log_weight`` for one target distribution; ``log_weight_<t>`` per target when separate."""
        if not self.separate_targets:
            return [LOG_WEIGHT]
        return [f"{LOG_WEIGHT}_{t}" for t in range(len(self.target_names))]

    def selection_columns(self, length_correction: str = NONE) -> list[str]:
        """The weight columns that resampling uses: the log weights, or their length-corrected twins."""
        return [corrected_column(name, length_correction) for name in self.weight_columns()]

    def mean_lengths(self) -> tuple[list[float], float]:
        """(mean tokens per document of each weight column's target distribution, of raw), from the
        count stage's stats: the lambdas of the Poisson length correction."""
        targets = self.metadata["targets"]
        if self.separate_targets:
            target_means = [mean_tokens(targets[name]) for name in self.target_names]
        else:
            pooled = {key: sum(t[key] for t in targets.values()) for key in ("documents", "tokens", "null_texts")}
            target_means = [mean_tokens(pooled)]
        return target_means, mean_tokens(self.metadata["raw"])

    def uniform_weight_warnings(self) -> list[str]:
        """A warning per weight column whose buckets all weigh the same (e.g. num_buckets: 1, or a target
        distributed exactly as raw): every document then gets the same weight, the selection is uniform."""
        names = self.target_names if self.separate_targets else [", ".join(self.target_names)]
        return [f"target {name}: the {self.bucket_weight_name} is {row[0]:.4g} in every bucket, so every document "
                "gets the same weight and the selection is uniformly random; check num_buckets and that the "
                "target differs from raw" for name, row in zip(names, self.bucket_weights()) if np.ptp(row) < 1e-9]

    def transform(self, documents: DataFrame, text_col: str = TEXT, id_col: str = ID, *,
                  length_correction: str = NONE, chunk_tokens: int = 0, chunk_min_tokens: int = 0) -> DataFrame:
        """Scores documents: ``id``, ``num_tokens`` and one log weight per target distribution, from the
        frame's ``text_col`` (may be nested, ``doc.body``) and ``id_col`` columns. With a
        ``length_correction`` (see dsir_spark.featurizer.lengths) each log weight gets a corrected twin column.
        With ``chunk_tokens`` > 0 each document is scored as consecutive chunks of that many tokens (a
        shorter last chunk kept with at least ``chunk_min_tokens``): one row per chunk, with DOC_ID,
        CHUNK, CHAR_START and CHAR_END, ``id`` being "<doc id>/<chunk>".

        The table travels inside the scoring function, so every Python worker gets it once per task
        (Spark Connect has no broadcast variables; this is the portable broadcast).
        """
        documents = documents.select(F.col(id_col).alias(ID), F.col(text_col).alias(TEXT))
        id_field = documents.schema[ID]
        if chunk_tokens:
            leading = [StructField(ID, StringType(), id_field.nullable),
                       StructField(DOC_ID, id_field.dataType, id_field.nullable),
                       StructField(CHUNK, IntegerType(), False), StructField(CHAR_START, LongType(), False),
                       StructField(CHAR_END, LongType(), False)]
        else:
            leading = [StructField(ID, id_field.dataType, id_field.nullable)]
        names = self.weight_columns()
        if length_correction != NONE:
            names = names + self.selection_columns(length_correction)
        schema = StructType(leading + [StructField(NUM_TOKENS, IntegerType(), False)]
                            + [StructField(name, DoubleType(), False) for name in names])
        lambdas = self.mean_lengths() if length_correction == POISSON else None
        scorer = _Scorer(self.features, self.scoring_table(), self.weight_columns(), requested_implementation(),
                         length_correction, lambdas, chunk_tokens, chunk_min_tokens)
        return documents.select(ID, TEXT).mapInArrow(scorer, schema)

    def header(self) -> dict[str, Any]:
        """The part of model.json every estimator writes."""
        return {
            "library": "dsir-spark",
            "version": __version__,
            "estimator": self.estimator,
            "features": {
                "ngrams": self.features.ngrams,
                "num_buckets": self.features.num_buckets,
                "hash": self.features.hash,
                "tokenizer": self.features.tokenizer,
                "hash_definition": HASH_DEFINITIONS[self.features.hash],
            },
            "target_names": self.target_names,
            "separate_targets": self.separate_targets,
            "target_proportions": self.target_proportions,
            "weight_columns": self.weight_columns(),
        }


def require_tokens(raw: BucketCounts, targets: Sequence[BucketCounts], target_names: Sequence[str]) -> None:
    """FitError unless raw and every target have tokens."""
    if raw.counts.sum() == 0:
        raise FitError("raw dataset has no tokens; check raw.paths and raw.text_col")
    for name, target in zip(target_names, targets):
        if target.counts.sum() == 0:
            raise FitError(
                f"target dataset {name} has no tokens ({target.documents} documents, "
                f"{target.null_texts} null texts); check its paths and text_col"
            )


def target_proportions(targets: Sequence[BucketCounts], fit: FitConfig) -> list[float] | None:
    """With separate targets, each target's share of k: as given, else its share of target tokens."""
    if not fit.separate_targets:
        return None
    given = fit.target_proportions
    proportions = np.asarray(given, dtype=float) if given is not None else np.array([t.tokens for t in targets], float)
    return (proportions / proportions.sum()).tolist()


def count_stats(raw: BucketCounts, targets: Sequence[BucketCounts], target_names: Sequence[str]) -> dict[str, Any]:
    """The count stage's totals a model keeps (its length correction's lambdas come from them)."""
    return {"raw": raw.stats(), "targets": {name: t.stats() for name, t in zip(target_names, targets)}}


def target_columns(name: str, separate: bool, targets: int) -> list[str]:
    """The columns of a per-bucket table that hold ``name`` for each weight column: ``name`` itself, or
    ``name_<t>`` per target when the targets are separate."""
    return [f"{name}_{t}" for t in range(targets)] if separate else [name]


def read_bucket_table(spark: SparkSession, path: str) -> pd.DataFrame:
    """A saved model's per-bucket table (``<model>/<table>``), in bucket order."""
    table = read_table(spark, path)
    if table is None:
        raise FileNotFoundError(f"no complete model at {path.rsplit('/', 1)[0]} ({path.rsplit('/', 1)[1]} "
                                "missing); run the fit stage")
    return table.sort_values("bucket")


def saved_fields(meta: dict[str, Any], own: Sequence[str] = ()) -> dict[str, Any]:
    """The fields every model has, from its model.json: targets, proportions, and the metadata (what is
    neither the header nor the model's ``own`` keys)."""
    return {"target_names": list(meta["target_names"]), "separate_targets": bool(meta["separate_targets"]),
            "target_proportions": meta["target_proportions"],
            "metadata": {k: v for k, v in meta.items() if k not in (*HEADER_KEYS, *own)}}


HEADER_KEYS = ("library", "version", "estimator", "features", "target_names", "separate_targets",
               "target_proportions", "weight_columns")


def read_header(spark: SparkSession, path: str) -> tuple[dict[str, Any], FeatureConfig]:
    """A saved model's model.json and its feature settings, checked to be computable by this version."""
    meta = read_json(spark, f"{path}/model.json")
    if meta is None:
        raise FileNotFoundError(f"no complete model at {path} (model.json missing); run the fit stage")
    features = dict(meta["features"])
    # Models written before the definition was recorded used definition v1 of their mode.
    definition = features.pop("hash_definition", HASH_DEFINITIONS.get(features.get("hash")))
    if definition != HASH_DEFINITIONS.get(features.get("hash")):
        raise FitError(
            f"the model at {path} was fitted with hash definition {definition!r} for hash mode "
            f"{features.get('hash')!r}, but this dsir-spark ({__version__}) computes "
            f"{HASH_DEFINITIONS.get(features.get('hash'))!r}: its buckets would not match; "
            "fit the model again (rerun the count and fit stages) with this version"
        )
    return meta, FeatureConfig(**features)


@dataclass(frozen=True)
class _Scorer:
    """The scoring function shipped to the Python workers (a picklable object holding the table)."""

    config: FeatureConfig
    scoring: ScoringTable
    names: Sequence[str]
    implementation: str
    length_correction: str
    lambdas: tuple[list[float], float] | None
    chunk_tokens: int
    chunk_min_tokens: int

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = make_featurizer(self.config, self.implementation)
        for batch in batches:
            texts = batch.column(TEXT).to_pylist()
            if self.chunk_tokens:
                chunks = self.scoring.score_chunks(featurizer, texts, self.chunk_tokens, self.chunk_min_tokens)
                doc_ids = batch.column(ID).take(pa.array(chunks.doc))
                ids = pc.binary_join_element_wise(pc.cast(doc_ids, pa.string()),
                                                  pc.cast(pa.array(chunks.chunk), pa.string()), "/")
                leading = {ID: ids, DOC_ID: doc_ids, CHUNK: pa.array(chunks.chunk), CHAR_START: pa.array(chunks.start),
                           CHAR_END: pa.array(chunks.end)}
                num_tokens, sums = chunks.num_tokens, chunks.sums
            else:
                num_tokens, sums = self.scoring.score(featurizer, texts)
                leading = {ID: batch.column(ID)}
            columns = {**leading, NUM_TOKENS: pa.array(num_tokens)}
            columns.update({name: pa.array(row) for name, row in zip(self.names, sums)})
            if self.length_correction != NONE:
                for t, (name, row) in enumerate(zip(self.names, sums)):
                    means = (self.lambdas[0][t], self.lambdas[1]) if self.lambdas else (1.0, 1.0)
                    columns[corrected_column(name, self.length_correction)] = pa.array(
                        correct(row, num_tokens, self.length_correction, *means))
            yield pa.RecordBatch.from_pydict(columns)
