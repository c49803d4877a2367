"""The fitted importance estimator: ``log_diff`` per bucket, with fit from counts and save/load.

Like pyspark.ml's Estimator -> Model: ``fit_model`` turns bucket counts into a ``DSIRModel``;
``DSIRModel.transform(documents)`` scores documents; ``save``/``load`` use Parquet + JSON, not pickle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from dsir_spark.config import FeatureConfig, FitConfig
from dsir_spark.counts import BucketCounts
from dsir_spark.features import HASH_DEFINITIONS, make_featurizer, requested_implementation
from dsir_spark.io import ID, TEXT
from dsir_spark.lengths import NONE, POISSON, correct, corrected_column, mean_tokens
from dsir_spark.records import read_json, read_table, write_json, write_table
from dsir_spark.version import __version__

EPS = 1e-8
NUM_TOKENS = "num_tokens"
LOG_WEIGHT = "log_weight"
# Scores of chunks (chunking.tokens > 0): ``id`` is "<doc id>/<chunk>", with the document's id, the chunk's
# index and its characters [start, end) in the document's text.
DOC_ID, CHUNK, CHAR_START, CHAR_END = "dsir_doc_id", "dsir_chunk", "dsir_char_start", "dsir_char_end"


class FitError(ValueError):
    """The counts cannot give a model (an empty target, an empty raw dataset)."""


def normalize(counts: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """Counts to probabilities, with an optional pseudo-count added to every bucket."""
    if smoothing == 0:
        return counts / counts.sum()
    return (counts + smoothing) / (counts.sum() + smoothing * len(counts))


@dataclass
class DSIRModel:
    """log_diff[t, b] = log(p_target_t[b] + 1e-8) - log(p_raw[b] + 1e-8), one row per target distribution."""

    features: FeatureConfig
    log_diff: np.ndarray
    raw_probs: np.ndarray
    target_probs: np.ndarray
    target_names: list[str]
    separate_targets: bool = False
    target_proportions: list[float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ scoring

    def weight_columns(self) -> list[str]:
        """``log_weight`` for one target distribution; ``log_weight_<t>`` per target when separate."""
        if not self.separate_targets:
            return [LOG_WEIGHT]
        return [f"{LOG_WEIGHT}_{t}" for t in range(len(self.log_diff))]

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

    def selection_columns(self, length_correction: str = NONE) -> list[str]:
        """The weight columns that resampling uses: the log weights, or their length-corrected twins."""
        return [corrected_column(name, length_correction) for name in self.weight_columns()]

    def transform(self, documents: DataFrame, text_col: str = TEXT, id_col: str = ID, *,
                  length_correction: str = NONE, chunk_tokens: int = 0, chunk_min_tokens: int = 0) -> DataFrame:
        """Scores documents: ``id``, ``num_tokens`` and one log weight per target distribution, from the
        frame's ``text_col`` (may be nested, ``doc.body``) and ``id_col`` columns. With a
        ``length_correction`` (see dsir_spark.lengths) each log weight gets a corrected twin column.
        With ``chunk_tokens`` > 0 each document is scored as consecutive chunks of that many tokens (a
        shorter last chunk kept with at least ``chunk_min_tokens``): one row per chunk, with DOC_ID,
        CHUNK, CHAR_START and CHAR_END, ``id`` being "<doc id>/<chunk>".

        The log-ratio table travels inside the scoring function, so every Python worker gets it once
        per task (Spark Connect has no broadcast variables; this is the portable broadcast).
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
        scorer = _Scorer(self.features, self.log_diff, self.weight_columns(), requested_implementation(),
                         length_correction, lambdas, chunk_tokens, chunk_min_tokens)
        return documents.select(ID, TEXT).mapInArrow(scorer, schema)

    # ------------------------------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "library": "dsir-spark",
            "version": __version__,
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
            **self.metadata,
        }

    def to_pandas(self) -> pd.DataFrame:
        table = {"bucket": np.arange(self.features.num_buckets, dtype=np.int32), "raw_prob": self.raw_probs}
        for t in range(len(self.log_diff)):
            suffix = "" if not self.separate_targets else f"_{t}"
            table[f"log_diff{suffix}"] = self.log_diff[t]
            table[f"target_prob{suffix}"] = self.target_probs[t]
        return pd.DataFrame(table)

    def save(self, spark: SparkSession, path: str) -> None:
        """Writes ``<path>/log_diff/`` (Parquet) and then ``<path>/model.json``."""
        write_table(spark, f"{path}/log_diff", self.to_pandas())
        write_json(spark, f"{path}/model.json", self.to_json())

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> DSIRModel:
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
        table = read_table(spark, f"{path}/log_diff")
        if table is None:
            raise FileNotFoundError(f"no complete model at {path} (log_diff missing); run the fit stage")
        table = table.sort_values("bucket")
        separate = bool(meta["separate_targets"])
        columns = range(len(meta["target_names"])) if separate else [None]

        def suffix(t: int | None) -> str:
            return "" if t is None else f"_{t}"

        known = {"library", "version", "features", "target_names", "separate_targets", "target_proportions",
                 "weight_columns"}
        return cls(
            features=FeatureConfig(**features),
            log_diff=np.stack([table[f"log_diff{suffix(t)}"].to_numpy() for t in columns]),
            raw_probs=table["raw_prob"].to_numpy(),
            target_probs=np.stack([table[f"target_prob{suffix(t)}"].to_numpy() for t in columns]),
            target_names=list(meta["target_names"]),
            separate_targets=separate,
            target_proportions=meta["target_proportions"],
            metadata={k: v for k, v in meta.items() if k not in known},
        )


@dataclass(frozen=True)
class _Scorer:
    """The scoring function shipped to the Python workers (a picklable object holding the table)."""

    config: FeatureConfig
    log_diff: np.ndarray
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
                chunks = featurizer.score_chunks(texts, self.log_diff, self.chunk_tokens, self.chunk_min_tokens)
                doc_ids = batch.column(ID).take(pa.array(chunks.doc))
                ids = pc.binary_join_element_wise(pc.cast(doc_ids, pa.string()),
                                                  pc.cast(pa.array(chunks.chunk), pa.string()), "/")
                leading = {ID: ids, DOC_ID: doc_ids, CHUNK: pa.array(chunks.chunk), CHAR_START: pa.array(chunks.start),
                           CHAR_END: pa.array(chunks.end)}
                num_tokens, sums = chunks.num_tokens, chunks.sums
            else:
                num_tokens, sums = featurizer.score(texts, self.log_diff)
                leading = {ID: batch.column(ID)}
            columns = {**leading, NUM_TOKENS: pa.array(num_tokens)}
            columns.update({name: pa.array(row) for name, row in zip(self.names, sums)})
            if self.length_correction != NONE:
                for t, (name, row) in enumerate(zip(self.names, sums)):
                    means = (self.lambdas[0][t], self.lambdas[1]) if self.lambdas else (1.0, 1.0)
                    columns[corrected_column(name, self.length_correction)] = pa.array(
                        correct(row, num_tokens, self.length_correction, *means))
            yield pa.RecordBatch.from_pydict(columns)


def uniform_weight_warnings(model: DSIRModel, target_names: Sequence[str]) -> list[str]:
    """A warning per target whose log ratio is the same in every bucket (e.g. num_buckets: 1, or a target
    distributed exactly as raw): every document then gets the same weight, and the selection is uniform."""
    return [f"target {name}: the log ratio is {row[0]:.4g} in every bucket, so every document gets the same "
            "weight and the selection is uniformly random; check num_buckets and that the target differs from raw"
            for name, row in zip(target_names, model.log_diff) if np.ptp(row) < 1e-9]


def fit_model(
    raw: BucketCounts,
    targets: Sequence[BucketCounts],
    target_names: Sequence[str],
    features: FeatureConfig,
    fit: FitConfig,
) -> DSIRModel:
    """The reference's fit_importance_estimator, from bucket counts."""
    if raw.counts.sum() == 0:
        raise FitError("raw dataset has no tokens; check raw.paths and raw.text_col")
    for name, target in zip(target_names, targets):
        if target.counts.sum() == 0:
            raise FitError(
                f"target dataset {name} has no tokens ({target.documents} documents, "
                f"{target.null_texts} null texts); check its paths and text_col"
            )
    raw_probs = normalize(raw.counts)
    smoothing = fit.target_laplace_smoothing
    if fit.separate_targets:
        target_probs = np.stack([normalize(t.counts, smoothing) for t in targets])
        tokens = np.array([t.tokens for t in targets], dtype=float)
        given = fit.target_proportions
        proportions = np.asarray(given, dtype=float) if given is not None else tokens
        proportions = (proportions / proportions.sum()).tolist()
    else:
        total = np.sum([t.counts for t in targets], axis=0)
        target_probs = normalize(total, smoothing)[np.newaxis, :]
        proportions = None
    log_diff = np.log(target_probs + EPS) - np.log(raw_probs + EPS)
    return DSIRModel(
        features=features,
        log_diff=log_diff,
        raw_probs=raw_probs,
        target_probs=target_probs,
        target_names=list(target_names),
        separate_targets=fit.separate_targets,
        target_proportions=proportions,
        metadata={
            "target_laplace_smoothing": smoothing,
            "raw": raw.stats(),
            "targets": {name: t.stats() for name, t in zip(target_names, targets)},
        },
    )
