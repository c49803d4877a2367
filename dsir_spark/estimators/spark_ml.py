"""The importance estimators as Spark ML citizens: an ``Estimator`` that fits from a DataFrame and a
``Model`` whose ``transform`` adds the weight columns to the frame it is given (every other column kept),
with Params, and saved and loaded by Spark ML's own persistence, so a ``Pipeline`` holds them and
``PipelineModel.save/load`` keeps them (the fitted model inside is the fit stage's Parquet + JSON, never
pickle).

    model = ImportanceWeighting(labelCol="is_target", textCol="text").fit(frame)
    model.transform(snapshot)             # snapshot + dsir_num_tokens + dsir_log_weight
    Pipeline(stages=[..., model]).fit(frame).save(path)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from dsir_spark.columns import ID, TEXT
from dsir_spark.config import LENGTH_CORRECTIONS, FeatureConfig, FitConfig
from dsir_spark.estimators.base import ImportanceModel
from dsir_spark.estimators.classifier import fit_logistic
from dsir_spark.estimators.ngram_ratio import fit_model
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.counts import bucket_counts, fit_budget_tokens, sample_for_fit
from dsir_spark.featurizer.features import make_featurizer, requested_implementation
from dsir_spark.featurizer.lengths import NONE, POISSON, correct, corrected_column

_MODEL_FOLDER = "model"  # inside a saved stage: the estimator's own Parquet + JSON


class _Columns(Params):
    textCol = Param(Params._dummy(), "textCol", "the column holding each document's text",
                    TypeConverters.toString)
    weightCol = Param(Params._dummy(), "weightCol", "output: the log importance weight (with separate targets "
                      "<weightCol>_<i>, one per target)", TypeConverters.toString)
    tokensCol = Param(Params._dummy(), "tokensCol", "output: the document's wordpunct tokens",
                      TypeConverters.toString)
    lengthCorrection = Param(Params._dummy(), "lengthCorrection", "none, or poisson or mean: each weight column "
                             "gets a corrected twin <weightCol>_<correction> (score.length_correction)",
                             TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(textCol="text", weightCol="dsir_log_weight", tokensCol="dsir_num_tokens",
                         lengthCorrection=NONE)


class _Appender:
    """The scoring function for mapInArrow: every column of the batch, plus tokens and weights."""

    def __init__(self, model: ImportanceModel, text: str, tokens: str, weights: list[str], correction: str) -> None:
        self.features, self.scoring, self.implementation = model.features, model.scoring_table(), \
            requested_implementation()
        self.text, self.tokens, self.weights, self.correction = text, tokens, weights, correction
        self.lambdas = model.mean_lengths() if correction == POISSON else None

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = make_featurizer(self.features, self.implementation)
        for batch in batches:
            num_tokens, sums = self.scoring.score(featurizer, batch.column(self.text).to_pylist())
            columns = [batch.column(i) for i in range(batch.num_columns)]
            columns += [pa.array(num_tokens, pa.int64()), *[pa.array(row, pa.float64()) for row in sums]]
            names = [*batch.schema.names, self.tokens, *self.weights]
            if self.correction != NONE:
                for t, (name, row) in enumerate(zip(self.weights, sums)):
                    means = (self.lambdas[0][t], self.lambdas[1]) if self.lambdas else (1.0, 1.0)
                    columns.append(pa.array(correct(row, num_tokens, self.correction, *means), pa.float64()))
                    names.append(corrected_column(name, self.correction))
            yield pa.RecordBatch.from_arrays(columns, names=names)


class ImportanceWeightModel(Model, _Columns, MLReadable, MLWritable):
    """A fitted importance model (the n-gram ratio or the classifier) as a Spark ML ``Model``."""

    def __init__(self, model: ImportanceModel | None = None, **params: Any) -> None:
        super().__init__()
        self.model = model
        self._set(**params)

    def weight_columns(self) -> list[str]:
        base = self.getOrDefault(self.weightCol)
        count = len(self.model.weight_columns())
        return [base] if count == 1 else [f"{base}_{t}" for t in range(count)]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        text, tokens = "__dsir_ml_text", self.getOrDefault(self.tokensCol)
        correction = self.getOrDefault(self.lengthCorrection)
        if correction not in LENGTH_CORRECTIONS:
            raise ValueError(f"lengthCorrection={correction!r}; use one of {LENGTH_CORRECTIONS}")
        names = self.weight_columns()
        if correction != NONE:
            names = names + [corrected_column(name, correction) for name in self.weight_columns()]
        frame = dataset.withColumn(text, F.col(self.getOrDefault(self.textCol)))
        schema = StructType([*frame.schema.fields, StructField(tokens, LongType(), False),
                             *[StructField(name, DoubleType(), False) for name in names]])
        appender = _Appender(self.model, text, tokens, self.weight_columns(), correction)
        return frame.mapInArrow(appender, schema).drop(text)

    def write(self) -> MLWriter:
        return _Writer(self)

    @classmethod
    def read(cls) -> MLReader:
        return _Reader(cls)


class _Writer(MLWriter):
    def __init__(self, instance: ImportanceWeightModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession)
        self.instance.model.save(self.sparkSession, f"{path}/{_MODEL_FOLDER}")


class _Reader(MLReader):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> ImportanceWeightModel:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        instance = self.cls(load_model(self.sparkSession, f"{path}/{_MODEL_FOLDER}"))
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        return instance


class ImportanceWeighting(Estimator, _Columns, MLReadable, MLWritable):
    """Fits an importance model from one frame whose ``labelCol`` (boolean) says which rows are the
    target: the reference's n-gram ratio (``estimator="ngram_ratio"``, the same exact bucket counts, and
    so the same model, as the pipeline's count and fit stages on the same documents with
    ``fit.num_tokens_to_fit: all``) or the classifier (``estimator="logistic"``, fit.* defaults)."""

    labelCol = Param(Params._dummy(), "labelCol", "true for a target document, false for a raw one",
                     TypeConverters.toString)
    ngrams = Param(Params._dummy(), "ngrams", "unigrams up to n-grams", TypeConverters.toInt)
    numBuckets = Param(Params._dummy(), "numBuckets", "hashed feature buckets", TypeConverters.toInt)
    hashMode = Param(Params._dummy(), "hashMode", "sha256 (the reference's buckets) or xxhash64",
                     TypeConverters.toString)
    tokenizer = Param(Params._dummy(), "tokenizer", "wordpunct (the reference's), wordpunct_regex or wordpunct_cjk "
                      "(features.tokenizer)", TypeConverters.toString)
    targetLaplaceSmoothing = Param(Params._dummy(), "targetLaplaceSmoothing", "pseudo-counts on the target",
                                   TypeConverters.toFloat)
    estimator = Param(Params._dummy(), "estimator", "ngram_ratio (the reference's log ratio) or logistic (a "
                      "classifier on the same features)", TypeConverters.toString)
    numTokensToFit = Param(Params._dummy(), "numTokensToFit", "raw tokens the raw distribution is estimated "
                           "from: auto (100,000 x numBuckets), all, or a number (fit.num_tokens_to_fit)",
                           TypeConverters.toString)
    idCol = Param(Params._dummy(), "idCol", "the id column the fit sample hashes (with numTokensToFit below "
                  "the raw tokens)", TypeConverters.toString)
    sampleSeed = Param(Params._dummy(), "sampleSeed", "which raw documents the fit sample takes",
                       TypeConverters.toInt)

    def __init__(self, **params: Any) -> None:
        super().__init__()
        defaults = FeatureConfig()
        self._setDefault(labelCol="is_target", ngrams=defaults.ngrams, numBuckets=defaults.num_buckets,
                         hashMode=defaults.hash, tokenizer=defaults.tokenizer, targetLaplaceSmoothing=0.0,
                         estimator="ngram_ratio", numTokensToFit="auto", idCol="id", sampleSeed=0)
        self._set(**params)

    def _fit(self, dataset: DataFrame) -> ImportanceWeightModel:
        features = FeatureConfig(ngrams=self.getOrDefault(self.ngrams), num_buckets=self.getOrDefault(self.numBuckets),
                                 hash=self.getOrDefault(self.hashMode), tokenizer=self.getOrDefault(self.tokenizer))
        budget = self.getOrDefault(self.numTokensToFit)
        ident = [F.col(self.getOrDefault(self.idCol)).alias(ID)] if budget != "all" else []
        documents = dataset.select(*ident, F.col(self.getOrDefault(self.textCol)).alias(TEXT),
                                   F.col(self.getOrDefault(self.labelCol)).cast("boolean").alias("__target"))
        raw_documents = documents.where(~F.col("__target")).drop("__target")
        target_documents = documents.where(F.col("__target")).select(TEXT)
        fitted_raw = raw_documents
        tokens = fit_budget_tokens(budget, features.num_buckets)
        if tokens is not None:  # the count stage's fit sample: documents whose hash of (seed, id) is small
            condition, _ = sample_for_fit(raw_documents, tokens, self.getOrDefault(self.sampleSeed),
                                          tokenizer=features.tokenizer)
            fitted_raw = raw_documents if condition is None else raw_documents.where(condition)
        raw = bucket_counts(fitted_raw.select(TEXT), features)
        target = bucket_counts(target_documents, features)
        raw_documents = raw_documents.select(TEXT)
        fit = FitConfig(target_laplace_smoothing=self.getOrDefault(self.targetLaplaceSmoothing),
                        estimator=self.getOrDefault(self.estimator))
        if fit.estimator == "logistic":
            fitted = fit_logistic(raw_documents, [target_documents], raw, [target], ["target_0"], features, fit)
        else:
            fitted = fit_model(raw, [target], ["target_0"], features, fit)
        columns = {name: self.getOrDefault(getattr(self, name)) for name in ("textCol", "weightCol", "tokensCol")}
        return self._copyValues(ImportanceWeightModel(fitted, **columns))

    def write(self) -> MLWriter:
        return DefaultParamsWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return DefaultParamsReader(cls)


def load_weighting(spark: SparkSession, path: str) -> ImportanceWeightModel:
    """A fitted model saved by the fit stage (``<run_dir>/model``) as a Spark ML model."""
    return ImportanceWeightModel(load_model(spark, path))


__all__ = ["ImportanceWeightModel", "ImportanceWeighting", "load_weighting"]
