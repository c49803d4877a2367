"""Count stage: hashed n-gram bucket counts of every target and of (a sample of) the raw dataset."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from dsir_spark.config import RunConfig
from dsir_spark.counts import bucket_counts, sample_for_fit
from dsir_spark.features import requested_implementation
from dsir_spark.io import documents, require_rows
from dsir_spark.model import FitError
from dsir_spark.rundir import counts_path, input_fingerprint, open_dataset, stage_dir, stage_settings, write_counts
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


def count_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    inputs = input_fingerprint(spark, config)
    raw, targets = read_inputs(spark, config, refresh=force)
    features = asdict(config.features)

    def work() -> dict[str, Any]:
        # Targets first: they are small, and an empty one should fail before the raw pass.
        summary: dict[str, Any] = {"targets": {}}
        target_counts_all = []
        for target_config, target in zip(config.targets, targets):
            target_counts = bucket_counts(documents(target), config.features)
            if target_counts.tokens == 0:
                raise FitError(
                    f"target dataset {target_config.name} ({', '.join(target_config.paths)}) has no tokens in "
                    f"column {target_config.text_col!r} ({target_counts.documents} documents, "
                    f"{target_counts.null_texts} null texts); check its paths and text_col"
                )
            write_counts(spark, counts_path(config, target_config), target_counts,
                         {"features": features, "dataset": asdict(target_config)})
            summary["targets"][target_config.name] = target_counts.stats()
            target_counts_all.append(target_counts)
        raw_docs = documents(raw)
        sample_info: dict[str, Any] = {"fraction": 1.0}
        budget = config.fit.num_tokens_to_fit
        if budget != "all":
            budget = 100000 * config.features.num_buckets if budget == "auto" else budget
            raw_docs, sample_info = sample_for_fit(raw_docs, budget, config.fit.sample_seed)
        raw_counts = bucket_counts(raw_docs, config.features)
        write_counts(spark, counts_path(config, config.raw), raw_counts,
                     {"features": features, "dataset": asdict(config.raw), "fit_sample": sample_info,
                      "num_tokens_to_fit": config.fit.num_tokens_to_fit})
        summary["raw"] = raw_counts.stats()
        rows_in = raw_counts.documents + sum(t["documents"] for t in summary["targets"].values())
        compiled = raw_counts.compiled_documents + sum(c.compiled_documents for c in target_counts_all)
        summary["featurizer"] = {"requested": requested_implementation(), "documents_compiled": compiled,
                                 "documents_python": rows_in - compiled}
        log.info("stage count: %d documents featurized by the compiled featurizer, %d by pure Python",
                 compiled, rows_in - compiled)
        return {**summary, "rows_in": rows_in, "rows_out": config.features.num_buckets * (1 + len(targets))}

    return run_stage(spark, "count", stage_dir(config, "count"), stage_settings(config, "count", inputs), work, force)
