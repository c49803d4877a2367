"""The stages in order, each reading the previous stage's output under one run directory.

    <run_dir>/counts/<dataset>/   Parquet (bucket, count), one table per dataset, + <dataset>.json
    <run_dir>/model/              log_diff/ (Parquet) + model.json
    <run_dir>/scores/             Parquet (id, num_tokens, log_weight[_t])
    <run_dir>/selection/, output/ written by the resample stage
    <run_dir>/report/             report.json, report.md, figures

Every stage folder gets a ``_dsir/stage.json`` record last (see ``dsir_spark.stages``). Inputs are
checked (paths, columns, types, empty targets) before any heavy work.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any, Optional

from pyspark.sql import DataFrame, SparkSession

from dsir_spark.config import DatasetConfig, RunConfig
from dsir_spark.counts import BucketCounts, bucket_counts, dense_counts, sample_for_fit
from dsir_spark.io import documents, read_dataset, read_json, require_rows, write_json
from dsir_spark.model import DSIRModel, FitError, fit_model
from dsir_spark.stages import fingerprint, read_record, run_stage

log = logging.getLogger("dsir_spark")
STAGES = ("count", "fit", "score", "resample", "report")
STAGE_FOLDERS = {"count": "counts", "fit": "model", "score": "scores", "resample": "selection", "report": "report"}


class StageOrderError(RuntimeError):
    """A stage's input (the previous stage's output) is missing or came from other settings."""


class RunDirError(RuntimeError):
    """The run directory cannot be written."""


def check_writable(spark: SparkSession, config: RunConfig) -> None:
    """Writes a tiny probe under the run directory, so that a bad run_dir fails before any work."""
    from pyspark.errors import PySparkException
    from py4j.protocol import Py4JError

    try:
        write_json(spark, f"{config.run_dir.rstrip('/')}/_dsir/probe", {"probe": True})
    except (PySparkException, Py4JError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        raise RunDirError(f"run_dir {config.run_dir} is not writable ({reason}); point run_dir at a folder "
                          "every executor can write (HDFS, s3://, dbfs:/ or a shared mount)") from exc


def stage_dir(config: RunConfig, stage: str) -> str:
    return f"{config.run_dir.rstrip('/')}/{STAGE_FOLDERS[stage]}"


def stage_settings(config: RunConfig, stage: str) -> dict[str, Any]:
    """The settings a stage's output depends on: each stage's include the earlier stages', so a
    change reruns everything after it. Plain JSON types, so a stored record compares equal."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    fit = asdict(config.fit)
    settings: dict[str, Any] = {
        "datasets": {"raw": asdict(config.raw), "targets": [asdict(t) for t in config.targets]},
        "features": asdict(config.features),
        "num_tokens_to_fit": fit["num_tokens_to_fit"],
        "sample_seed": fit["sample_seed"],
    }
    if stage in ("fit", "score", "resample"):
        settings["fit"] = fit
    if stage in ("resample", "report"):
        settings["resample"] = asdict(config.resample)
    if stage == "report":
        settings["report"] = asdict(config.report)
    return json.loads(json.dumps(settings))


def read_inputs(spark: SparkSession, config: RunConfig) -> tuple[DataFrame, list[DataFrame]]:
    """Opens every dataset and checks paths, columns and non-empty targets, before any heavy work."""
    raw = read_dataset(spark, config.raw)
    targets = [read_dataset(spark, t) for t in config.targets]
    for target_config, target in zip(config.targets, targets):
        require_rows(target, f"target dataset {target_config.name} ({', '.join(target_config.paths)})")
    require_rows(raw, f"raw dataset ({', '.join(config.raw.paths)})")
    return raw, targets


def counts_path(config: RunConfig, dataset: DatasetConfig) -> str:
    return f"{stage_dir(config, 'count')}/{dataset.name}"


def _write_counts(spark: SparkSession, path: str, counts: BucketCounts, extra: dict[str, Any]) -> None:
    spark.createDataFrame(counts.to_pandas()).coalesce(1).write.mode("overwrite").parquet(path)
    write_json(spark, f"{path}.json", {**counts.stats(), **extra})


def load_counts(spark: SparkSession, path: str, num_buckets: int) -> BucketCounts:
    stats = read_json(spark, f"{path}.json")
    if stats is None:
        raise StageOrderError(f"no bucket counts at {path}; run the count stage first")
    table = spark.read.parquet(path).toPandas()
    counts = dense_counts(table["bucket"].to_numpy(), table["count"].to_numpy(), num_buckets)
    return BucketCounts(counts, stats["documents"], stats["tokens"], stats["null_texts"])


def count_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    raw, targets = read_inputs(spark, config)
    features = asdict(config.features)

    def work() -> dict[str, Any]:
        # Targets first: they are small, and an empty one should fail before the raw pass.
        summary: dict[str, Any] = {"targets": {}}
        for target_config, target in zip(config.targets, targets):
            target_counts = bucket_counts(documents(target), config.features)
            if target_counts.tokens == 0:
                raise FitError(
                    f"target dataset {target_config.name} ({', '.join(target_config.paths)}) has no tokens in "
                    f"column {target_config.text_col!r} ({target_counts.documents} documents, "
                    f"{target_counts.null_texts} null texts); check its paths and text_col"
                )
            _write_counts(spark, counts_path(config, target_config), target_counts,
                          {"features": features, "dataset": asdict(target_config)})
            summary["targets"][target_config.name] = target_counts.stats()
        raw_docs = documents(raw)
        sample_info: dict[str, Any] = {"fraction": 1.0}
        budget = config.fit.num_tokens_to_fit
        if budget != "all":
            budget = 100000 * config.features.num_buckets if budget == "auto" else budget
            raw_docs, sample_info = sample_for_fit(raw_docs, budget, config.fit.sample_seed)
        raw_counts = bucket_counts(raw_docs, config.features)
        _write_counts(spark, counts_path(config, config.raw), raw_counts,
                      {"features": features, "dataset": asdict(config.raw), "fit_sample": sample_info,
                       "num_tokens_to_fit": config.fit.num_tokens_to_fit})
        summary["raw"] = raw_counts.stats()
        rows_in = raw_counts.documents + sum(t["documents"] for t in summary["targets"].values())
        return {**summary, "rows_in": rows_in, "rows_out": config.features.num_buckets * (1 + len(targets))}

    return run_stage(spark, "count", stage_dir(config, "count"), stage_settings(config, "count"), work, force)


def require_stage(spark: SparkSession, config: RunConfig, stage: str) -> None:
    """Fails unless ``stage`` completed with the settings of ``config`` (its output is our input)."""
    folder = stage_dir(config, stage)
    record = read_record(spark, folder)
    if record is None:
        raise StageOrderError(f"the {stage} stage has no complete output in {folder}; run it first")
    expected = stage_settings(config, stage)
    if record["fingerprint"] != fingerprint(expected):
        difference = describe_difference(record["settings"], expected)
        raise StageOrderError(
            f"{folder} was made with other settings ({difference}); "
            f"rerun the {stage} stage or use the run directory that matches"
        )


def describe_difference(old: Any, new: Any, path: str = "") -> str:
    """The first setting that differs between two nested settings dicts, as 'a.b: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return describe_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            if a != b:
                return describe_difference(a, b, f"{path}[{i}]")
    return f"{path}: {old!r} -> {new!r}"


def fit_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    require_stage(spark, config, "count")

    def work() -> dict[str, Any]:
        model = fit_from_counts(spark, config)
        model.save(spark, stage_dir(config, "fit"))
        return {"rows_in": config.features.num_buckets * (1 + len(config.targets)),
                "rows_out": config.features.num_buckets, "target_proportions": model.target_proportions}

    return run_stage(spark, "fit", stage_dir(config, "fit"), stage_settings(config, "fit"), work, force)


def fit_from_counts(spark: SparkSession, config: RunConfig) -> DSIRModel:
    num_buckets = config.features.num_buckets
    raw = load_counts(spark, counts_path(config, config.raw), num_buckets)
    targets = [load_counts(spark, counts_path(config, t), num_buckets) for t in config.targets]
    model = fit_model(raw, targets, [t.name for t in config.targets], config.features, config.fit)
    model.metadata["num_tokens_to_fit"] = config.fit.num_tokens_to_fit
    return model


def score_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    require_stage(spark, config, "fit")
    raw = read_dataset(spark, config.raw)
    out = stage_dir(config, "score")

    def work() -> dict[str, Any]:
        model = DSIRModel.load(spark, stage_dir(config, "fit"))
        model.transform(documents(raw)).write.mode("overwrite").parquet(out)
        rows = spark.read.parquet(out).count()
        return {"rows_in": rows, "rows_out": rows, "weight_columns": model.weight_columns()}

    return run_stage(spark, "score", out, stage_settings(config, "score"), work, force)


def run_pipeline(
    spark: SparkSession, config: RunConfig, force: bool = False, stages: Optional[tuple[str, ...]] = None
) -> dict[str, dict[str, Any]]:
    """Runs the stages in order, skipping those already complete with the same settings."""
    from dsir_spark.report import report_stage
    from dsir_spark.resampling import resample_stage

    runners = {"count": count_stage, "fit": fit_stage, "score": score_stage, "resample": resample_stage,
               "report": report_stage}
    check_writable(spark, config)
    records: dict[str, dict[str, Any]] = {}
    rerun = force
    for stage in stages or STAGES:
        record = runners[stage](spark, config, force=rerun)
        # Once a stage ran again, everything after it must too.
        rerun = rerun or not record.get("skipped", False)
        records[stage] = record
    return records
