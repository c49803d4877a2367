"""Count stage: hashed n-gram bucket counts of every target and of (a sample of) the raw dataset."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.config import DatasetConfig, FeatureConfig, RunConfig
from dsir_spark.counts import BucketCounts, grouped_bucket_counts, sample_for_fit
from dsir_spark.features import requested_implementation
from dsir_spark.io import (
    BAD,
    BAD_REASONS,
    GOOD,
    NO_TEXT,
    NOT_STRING,
    TEXT,
    TOO_LONG,
    InputError,
    documents,
    files_without_text,
    first_bad_file,
    reading,
    require_rows,
    rows,
)
from dsir_spark.model import FitError
from dsir_spark.ngrams import top_ngrams
from dsir_spark.rundir import (
    counts_path,
    input_fingerprint,
    ngrams_path,
    open_dataset,
    stage_dir,
    stage_settings,
    write_counts,
)
from dsir_spark.stages.runner import run_stage

log = logging.getLogger("dsir_spark")


def read_inputs(spark: SparkSession, config: RunConfig, refresh: bool) -> tuple[DataFrame, list[DataFrame]]:
    """Opens every dataset and checks paths, columns and non-empty targets, before any heavy work."""
    raw = open_dataset(spark, config, config.raw, refresh)
    targets = [open_dataset(spark, config, t, refresh) for t in config.targets]
    for target_config, target in zip(config.targets, targets):
        require_rows(target, f"target dataset {target_config.name} ({', '.join(target_config.paths)})")
    require_rows(raw, f"raw dataset ({', '.join(config.raw.paths)})")
    return raw, targets


# Groups for documents outside the fit sample: counted nowhere, never featurized (null texts apart, so that
# a file without the text column is noticed wherever its rows fall).
OUT_OF_SAMPLE, OUT_OF_SAMPLE_NULL = -1, -2


def _require_text_in_every_file(df: DataFrame, dataset: DatasetConfig) -> None:
    missing = files_without_text(df, dataset)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"dataset {dataset.name}: {missing[0]}{more} has no text column {dataset.text_col!r}, "
                         "which the dataset's other files have; every file needs it, as a string: fix that file "
                         "or move it out")


def dataset_counts(df: DataFrame, dataset: DatasetConfig, features: FeatureConfig,
                   in_sample: Column | None = None) -> tuple[BucketCounts, dict[str, int]]:
    """Bucket counts of a dataset's documents (those ``in_sample``, if given) and the number of lines the
    reader could not parse, by reason, in one pass; fails on such lines unless on_bad_records: skip."""
    group = F.col(BAD)
    if in_sample is not None:
        outside = F.when(F.col(TEXT).isNull(), F.lit(OUT_OF_SAMPLE_NULL)).otherwise(F.lit(OUT_OF_SAMPLE))
        group = F.when((F.col(BAD) == F.lit(GOOD)) & ~in_sample, outside).otherwise(F.col(BAD))
    frame = rows(df).withColumn(TEXT, F.when(group == F.lit(GOOD), F.col(TEXT)))
    with reading(dataset):
        by_group = grouped_bucket_counts(frame, features, group)
        null_texts = (by_group[GOOD].null_texts if GOOD in by_group else 0) + (
            by_group[OUT_OF_SAMPLE_NULL].documents if OUT_OF_SAMPLE_NULL in by_group else 0)
        if null_texts:
            _require_text_in_every_file(df, dataset)
    bad = {reason: by_group[code].documents for code, reason in BAD_REASONS.items() if code in by_group}
    if bad and dataset.on_bad_records == "fail":
        file, code = first_bad_file(df)
        how = {TOO_LONG: "raise the dataset's json_max_string_length (Spark's JSON option maxStringLen)",
               NOT_STRING: "every record's text must be a JSON string: fix them, or point text_col at a string field",
               NO_TEXT: f"every record needs the text field {dataset.text_col!r}: fix them, or check text_col"}.get(
            code, "fix or remove them")
        found = ", ".join(f"{n:,} {reason}" for reason, n in bad.items())
        raise InputError(
            f"dataset {dataset.name}: {sum(bad.values()):,} lines are not documents ({found}); the first is in "
            f"{file} ({BAD_REASONS[code]}); {how}, or set on_bad_records: skip to leave them out (counted)"
        )
    if bad:
        log.warning("dataset %s: left out %s lines the reader could not parse: %s", dataset.name,
                    sum(bad.values()), bad)
    empty = BucketCounts(np.zeros(features.num_buckets, dtype=np.int64), 0, 0, 0)
    return by_group.get(GOOD, empty), bad


def count_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    inputs = input_fingerprint(spark, config)
    raw, targets = read_inputs(spark, config, refresh=force)
    features = asdict(config.features)

    def work() -> dict[str, Any]:
        # Targets first: they are small, and an empty one should fail before the raw pass.
        summary: dict[str, Any] = {"targets": {}, "bad_records": {}}
        target_counts_all = []
        for target_config, target in zip(config.targets, targets):
            target_counts, bad = dataset_counts(target, target_config, config.features)
            if target_counts.tokens == 0:
                raise FitError(
                    f"target dataset {target_config.name} ({', '.join(target_config.paths)}) has no tokens in "
                    f"column {target_config.text_col!r} ({target_counts.documents} documents, "
                    f"{target_counts.null_texts} null texts); check its paths and text_col"
                )
            write_counts(spark, counts_path(config, target_config), target_counts,
                         {"features": features, "dataset": asdict(target_config), "bad_records": bad})
            summary["targets"][target_config.name] = target_counts.stats()
            summary["bad_records"][target_config.name] = bad
            target_counts_all.append(target_counts)
        # What the buckets stand for: the targets' most frequent n-gram strings of each (report, explain).
        target_docs = [documents(t) for t in targets]
        pooled = target_docs[0]
        for other in target_docs[1:]:
            pooled = pooled.unionByName(other)
        top_ngrams(pooled, config.features).write.mode("overwrite").parquet(ngrams_path(config))
        in_sample, sample_info = None, {"fraction": 1.0}
        budget = config.fit.num_tokens_to_fit
        if budget != "all":
            budget = 100000 * config.features.num_buckets if budget == "auto" else budget
            in_sample, sample_info = sample_for_fit(documents(raw), budget, config.fit.sample_seed)
        raw_counts, bad = dataset_counts(raw, config.raw, config.features, in_sample)
        write_counts(spark, counts_path(config, config.raw), raw_counts,
                     {"features": features, "dataset": asdict(config.raw), "fit_sample": sample_info,
                      "num_tokens_to_fit": config.fit.num_tokens_to_fit, "bad_records": bad})
        summary["raw"] = raw_counts.stats()
        summary["bad_records"][config.raw.name] = bad
        rows_in = raw_counts.documents + sum(t["documents"] for t in summary["targets"].values())
        compiled = raw_counts.compiled_documents + sum(c.compiled_documents for c in target_counts_all)
        summary["featurizer"] = {"requested": requested_implementation(), "documents_compiled": compiled,
                                 "documents_python": rows_in - compiled}
        log.info("stage count: %d documents featurized by the compiled featurizer, %d by pure Python",
                 compiled, rows_in - compiled)
        return {**summary, "rows_in": rows_in, "rows_out": config.features.num_buckets * (1 + len(targets))}

    return run_stage(spark, "count", stage_dir(config, "count"), stage_settings(config, "count", inputs), work, force)
