"""The scores a run resamples and reports on: its own (``<run_dir>/scores``) or any table with an id and
a numeric log-weight column (``resample.scores``, ``resample.weight_col``), e.g. a quality classifier's
log-odds, so the exact seeded Gumbel top-k serves any importance estimator."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from dsir_spark.columns import DOC_ID, ID, NUM_TOKENS
from dsir_spark.config import TABLE_PREFIX, RunConfig
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.chunks import is_chunked
from dsir_spark.run.directory import model_path, stage_dir
from dsir_spark.selection.resampling import Quota
from dsir_spark.storage.io import InputError

DEFAULT_WEIGHT = "log_weight"
GROUP = "__dsir_group"  # the scores' column of resample.group_col's values


def scores_location(config: RunConfig) -> str:
    return config.resample.scores or stage_dir(config, "score")


def open_scores(spark: SparkSession, config: RunConfig) -> DataFrame:
    """The scores to resample, with ``id``, ``num_tokens`` and the weight columns checked (names, types)."""
    location = scores_location(config)
    try:
        if location.startswith(TABLE_PREFIX):
            scores = spark.read.table(location[len(TABLE_PREFIX):])
        else:
            scores = spark.read.parquet(location)
        columns = scores.schema
    except AnalysisException as exc:
        raise InputError(f"resample.scores: cannot read {location} ({str(exc).splitlines()[0]}); give a Parquet "
                         "folder or table:<name> with an id and a numeric log-weight column") from exc
    names = columns.fieldNames()
    if ID not in names:
        raise InputError(f"scores {location} have no {ID!r} column (columns: {names}); the id must be the raw "
                         "dataset's document id (its id_col, or the dsir_id dsir-spark derives)")
    if NUM_TOKENS not in names:
        if config.resample.min_example_length > 0:
            raise InputError(f"scores {location} have no {NUM_TOKENS!r} column, which resample.min_example_length="
                             f"{config.resample.min_example_length} needs; add it, or set min_example_length: 0")
        scores = scores.withColumn(NUM_TOKENS, F.lit(0))
    return scores


def weight_columns(spark: SparkSession, config: RunConfig, scores: DataFrame) -> list[str]:
    """The columns the selection is made by: resample.weight_col, else the run's own log weights (length
    corrected when score.length_correction says so), else ``log_weight``; each must be numeric."""
    if config.resample.weight_col:
        wanted = [config.resample.weight_col]
    elif config.resample.scores:
        wanted = [DEFAULT_WEIGHT]
    else:
        model = load_model(spark, model_path(config))
        wanted = model.selection_columns(config.score.length_correction)
    location = scores_location(config)
    for name in wanted:
        if name not in scores.columns:
            raise InputError(f"resample.weight_col: scores {location} have no column {name!r} (columns: "
                             f"{scores.columns}); name their log-weight column")
        field = scores.schema[name]
        if not isinstance(field.dataType, NumericType):
            raise InputError(f"resample.weight_col: column {name!r} of scores {location} is "
                             f"{field.dataType.simpleString()}, not a number; name a numeric log-weight column")
    return wanted


def with_groups(scores: DataFrame, raw: DataFrame, config: RunConfig) -> tuple[DataFrame, Quota]:
    """The scores with each document's group (resample.group_col of its raw row, from ``io.read_dataset``;
    a chunk has its document's), and the quota on it."""
    settings = config.resample
    on = DOC_ID if is_chunked(scores) else ID
    groups = raw.select(F.col("__dsir_id").alias(on), F.col(settings.group_col).cast("string").alias(GROUP))
    quota = Quota(GROUP, settings.max_share, {cap.value: cap.max_share for cap in settings.group_caps})
    return scores.join(groups, on=on, how="left"), quota
