"""Length-aware weights and resampling by any weight column."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import PILE, TARGET_C, read_jsonl

from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig, ScoreConfig
from dsir_spark.estimators.ngram_ratio import DSIRModel
from dsir_spark.featurizer.features import tokenize
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import stage_dir
from dsir_spark.selection.resampling import ResampleError
from dsir_spark.storage.io import InputError

RAW = read_jsonl(PILE)


def run_config(run_dir, **sections) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        report=ReportConfig(enabled=False),
        **sections,
    )


def log_poisson(n: int, lam: float) -> float:
    return n * math.log(lam) - lam - math.lgamma(n + 1)


def test_length_corrections_equal_a_hand_computation_and_both_columns_are_written(spark, tmp_path):
    config = run_config(tmp_path / "run", score=ScoreConfig(length_correction="poisson"),
                        resample=ResampleConfig(num_to_sample=10))
    records = run_pipeline(spark, config, stages=("count", "fit", "score", "resample"))
    assert records["resample"]["weight_columns"] == ["log_weight_poisson"]
    scores = {r["id"]: r for r in spark.read.parquet(stage_dir(config, "score")).collect()}
    # The lambdas by hand: mean tokens per document of each side, from the files themselves.
    lam_raw = np.mean([len(tokenize(r["contents"])) for r in RAW])
    lam_target = np.mean([len(tokenize(r["contents"])) for r in read_jsonl(TARGET_C)])
    for doc in RAW[:25]:
        row = scores[doc["id"]]
        n = len(tokenize(doc["contents"]))
        assert row["num_tokens"] == n
        expected = row["log_weight"] + log_poisson(n, lam_target) - log_poisson(n, lam_raw)
        assert row["log_weight_poisson"] == pytest.approx(expected, rel=1e-9, abs=1e-6)

    model = DSIRModel.load(spark, stage_dir(config, "fit"))
    docs = spark.createDataFrame([(d["id"], d["contents"]) for d in RAW[:25]] + [(-1, "")], "id long, contents string")
    mean = {r["id"]: r for r in model.transform(docs, "contents", "id", length_correction="mean").collect()}
    for doc in RAW[:25]:
        row = mean[doc["id"]]
        assert row["log_weight_mean"] == pytest.approx(row["log_weight"] / row["num_tokens"], rel=1e-12)
    assert mean[-1]["log_weight_mean"] == 0.0 and mean[-1]["num_tokens"] == 0


def write_scores(spark, path, weights, partitions=1):
    rows = [(doc["id"], len(tokenize(doc["contents"])), float(w)) for doc, w in zip(RAW, weights)]
    frame = spark.createDataFrame(rows, "id long, num_tokens int, quality double").repartition(partitions)
    frame.write.mode("overwrite").parquet(str(path))
    return str(path)


def selected(spark, run_dir):
    return sorted(r["id"] for r in spark.read.parquet(str(run_dir / "output")).select("id").collect())


def test_any_weight_column_keeps_exactly_k_seeded_and_partition_invariant(spark, tmp_path):
    weights = np.random.default_rng(0).normal(size=len(RAW)) * 3
    one = write_scores(spark, tmp_path / "one", weights, 1)
    four = write_scores(spark, tmp_path / "four", weights, 4)

    def run(name, scores, seed=0):
        config = run_config(tmp_path / name, resample=ResampleConfig(
            num_to_sample=50, seed=seed, scores=scores, weight_col="quality", min_example_length=20))
        records = run_pipeline(spark, config)
        assert "score" not in records  # the scores come from elsewhere
        assert records["resample"]["weight_columns"] == ["quality"] and records["resample"]["rows_out"] == 50
        return selected(spark, tmp_path / name)

    first = run("a", one)
    assert len(first) == 50 and run("b", four) == first
    assert run("c", one, seed=1) != first
    long_enough = {d["id"] for d in RAW if len(tokenize(d["contents"])) >= 20}
    assert set(first) <= long_enough


@pytest.mark.parametrize("bad, message", [
    ({3: float("nan"), 5: float("nan"), 8: float("nan"), 9: float("inf")},
     r"weight column 'quality': 4 of 1,000 values are not finite numbers \(3 NaN, 1 infinite\)"),
    ({0: float("-inf")}, r"1 of 1,000 values are not finite numbers \(1 infinite\)"),
])
def test_nan_and_infinite_weights_are_refused_with_counts(spark, tmp_path, bad, message):
    weights = np.zeros(len(RAW))
    for index, value in bad.items():
        weights[index] = value
    scores = write_scores(spark, tmp_path / "scores", weights)
    config = run_config(tmp_path / "run", resample=ResampleConfig(num_to_sample=5, scores=scores, weight_col="quality"))
    with pytest.raises(ResampleError, match=message):
        run_pipeline(spark, config)


def test_a_missing_or_non_numeric_weight_column_is_named(spark, tmp_path):
    scores = write_scores(spark, tmp_path / "scores", np.zeros(len(RAW)))
    base = run_config(tmp_path / "run", resample=ResampleConfig(num_to_sample=5, scores=scores, weight_col="qualty"))
    with pytest.raises(InputError, match=r"resample.weight_col: scores \S+ have no column 'qualty' \(columns: "):
        run_pipeline(spark, base)
    text = tmp_path / "text"
    spark.createDataFrame([(1, 5, "high")], "id long, num_tokens int, quality string").write.parquet(str(text))
    wrong = dataclasses.replace(base, resample=dataclasses.replace(base.resample, scores=str(text),
                                                                    weight_col="quality"))
    with pytest.raises(InputError, match="column 'quality' of scores .* is string, not a number"):
        run_pipeline(spark, wrong)
