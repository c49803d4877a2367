"""Resampling: exactly k, reproducible on any partitioning, the right distribution, the reference's top-k."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import PILE, TARGET_C, TARGET_WIKI, read_jsonl, write_jsonl
from pyspark.sql import functions as F
from pyspark.sql.window import Window
from reference import run_reference

import dsir_spark.selection.resampling as resampling
from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import StageOrderError, read_record
from dsir_spark.selection.resampling import ResampleError, gumbel_keys, select, split_across_targets
from dsir_spark.storage.io import InputError

NO_REPORT = ReportConfig(enabled=False)


@pytest.fixture(scope="module")
def synthetic_scores(spark):
    """20,000 documents with known log weights; every 10th is too short to be eligible."""
    rng = np.random.default_rng(1)
    rows = [(i, 50 if i % 10 == 0 else 200, float(w)) for i, w in enumerate(rng.normal(0, 3, 20_000))]
    df = spark.createDataFrame(rows, "id long, num_tokens int, log_weight double")
    return df.cache()


def ids_of(selection):
    return sorted(r.id for r in selection.select("id").collect())


def test_exactly_k_and_the_same_ids_on_1_and_7_partitions(synthetic_scores):
    first, summary = select(synthetic_scores.repartition(1), ["log_weight"], 1234, seed=5)
    second, _ = select(synthetic_scores.repartition(7), ["log_weight"], 1234, seed=5)
    chosen = ids_of(first)
    assert len(chosen) == 1234 == len(set(chosen))
    assert chosen == ids_of(second)
    assert all(i % 10 != 0 for i in chosen)  # too short: never selected
    assert summary["eligible"] == 18_000 and summary["documents"] == 20_000
    other, _ = select(synthetic_scores, ["log_weight"], 1234, seed=6)
    assert ids_of(other) != chosen


def test_the_band_search_gives_the_same_selection_as_a_direct_sort(synthetic_scores, monkeypatch):
    direct, _ = select(synthetic_scores, ["log_weight"], 3000, seed=2)
    monkeypatch.setattr(resampling, "BAND_LIMIT", 300)  # forces several quantile-narrowing rounds
    narrowed, summary = select(synthetic_scores, ["log_weight"], 3000, seed=2)
    assert ids_of(narrowed) == ids_of(direct)
    # And both equal the k largest keys by a full sort.
    keys = gumbel_keys(synthetic_scores.where("num_tokens >= 100"), "log_weight", 2, 0, top_k=False)
    expected = sorted(r.id for r in keys.orderBy(F.desc("key"), "id").limit(3000).collect())
    assert ids_of(direct) == expected


def test_top_k_ties_are_broken_by_id(spark):
    scores = spark.createDataFrame([(i, 500, 1.0 if i < 50 else 0.0) for i in range(100)],
                                   "id long, num_tokens int, log_weight double")
    chosen, _ = select(scores, ["log_weight"], 10, top_k=True)
    assert ids_of(chosen) == list(range(10))


def inclusion_frequencies(spark, log_weights, k, seeds):
    """How often each document is among the k largest keys, over many seeds (computed by Spark)."""
    n = len(log_weights)
    frame = spark.createDataFrame(
        [(s, i, 500, float(w)) for s in range(seeds) for i, w in enumerate(log_weights)],
        "seed long, id long, num_tokens int, log_weight double",
    )
    keys = gumbel_keys(frame, "log_weight", F.col("seed"), 0, top_k=False)
    ranked = keys.withColumn("rank", F.row_number().over(Window.partitionBy("seed").orderBy(F.desc("key"), "id")))
    counts = ranked.where(F.col("rank") <= k).groupBy("id").count().collect()
    freq = np.zeros(n)
    for row in counts:
        freq[row["id"]] = row["count"]
    return freq


def chi_square(observed, expected):
    return float(np.sum((observed - expected) ** 2 / expected))


def test_k_equal_1_picks_in_proportion_to_the_weights(spark):
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    seeds = 4000
    freq = inclusion_frequencies(spark, np.log(weights), 1, seeds)
    expected = seeds * weights / weights.sum()
    # 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
    assert chi_square(freq, expected) < 18.47, (freq, expected)
    # A sampler that ignored the weights would fail the same test.
    assert chi_square(np.full(5, seeds / 5), expected) > 18.47


def test_k_greater_than_1_matches_a_numpy_gumbel_simulation(spark):
    weights = np.array([1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 0.5])
    k, seeds = 3, 3000
    freq = inclusion_frequencies(spark, np.log(weights), k, seeds)
    rng = np.random.default_rng(0)
    sims = 200_000
    keys = np.log(weights) + rng.gumbel(size=(sims, len(weights)))
    top = np.argpartition(-keys, k, axis=1)[:, :k]
    p_include = np.bincount(top.ravel(), minlength=len(weights)) / sims
    expected = seeds * p_include
    assert freq.sum() == k * seeds
    # 7 degrees of freedom (the counts sum to k * seeds): P(chi2 > 24.32) = 0.001.
    assert chi_square(freq, expected) < 24.32, (freq, expected)
    # Sampling proportional to weights *with* replacement-style marginals (k * w / sum w) is wrong here.
    naive = seeds * np.minimum(1, k * weights / weights.sum())
    assert chi_square(naive, expected) > 24.32


def test_select_uses_the_same_keys_as_the_frequency_test(spark):
    log_weights = np.log([1.0, 2.0, 3.0, 4.0, 10.0])
    scores = spark.createDataFrame([(i, 500, float(w)) for i, w in enumerate(log_weights)],
                                   "id long, num_tokens int, log_weight double")
    for seed in range(5):
        chosen, _ = select(scores, ["log_weight"], 2, seed=seed)
        keys = gumbel_keys(scores, "log_weight", seed, 0, top_k=False).orderBy(F.desc("key"), "id").limit(2)
        assert ids_of(chosen) == sorted(r.id for r in keys.collect())


def test_split_across_targets_like_the_reference():
    assert split_across_targets(10, [0.5, 0.5]) == [5, 5]
    assert split_across_targets(10, [1 / 3, 1 / 3, 1 / 3]) == [3, 3, 4]
    assert sum(split_across_targets(1001, [0.123, 0.877])) == 1001


def test_no_more_than_the_eligible_documents(synthetic_scores):
    with pytest.raises(ResampleError, match=r"num_to_sample=18001 but only 18000 of 20000 documents are eligible"):
        select(synthetic_scores, ["log_weight"], 18_001)
    everything, _ = select(synthetic_scores, ["log_weight"], 18_000)
    assert len(ids_of(everything)) == 18_000


# ---------------------------------------------------------------------------------------------- full stage


def pile_config(run_dir, **resample):
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(**resample),
        report=NO_REPORT,
    )


def test_top_k_matches_the_reference(spark, tmp_path):
    ref = run_reference([str(PILE)], [str(TARGET_C)], tmp_path / "ref")
    ref.dsir.resample(out_dir=str(tmp_path / "ref_out"), num_to_sample=50, top_k=True)
    expected = sorted(r["id"] for r in read_jsonl(tmp_path / "ref_out" / "0.jsonl"))
    config = pile_config(tmp_path / "ours", num_to_sample=50, top_k=True, output_format="json")
    run_pipeline(spark, config)
    ours = spark.read.json(str(tmp_path / "ours" / "output"))
    assert sorted(r.id for r in ours.select("id").collect()) == expected
    assert set(ours.columns) >= {"contents", "metadata", "id", "dsir_log_weight", "dsir_target"}


def test_separate_targets_split_k_and_never_pick_twice(spark, tmp_path):
    config = RunConfig(
        run_dir=str(tmp_path / "run"),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),
                 DatasetConfig(paths=(str(TARGET_WIKI),), text_col="contents")),
        fit=FitConfig(num_tokens_to_fit="all", separate_targets=True),
        resample=ResampleConfig(num_to_sample=101, seed=3),
        report=NO_REPORT,
    )
    records = run_pipeline(spark, config)
    proportions = records["fit"]["target_proportions"]
    out = spark.read.parquet(str(tmp_path / "run" / "output"))
    per_target = {r.dsir_target: r["count"] for r in out.groupBy("dsir_target").count().collect()}
    assert [per_target.get(0, 0), per_target.get(1, 0)] == split_across_targets(101, proportions)
    assert out.select("id").distinct().count() == 101
    assert records["resample"]["per_target"] == split_across_targets(101, proportions)


def test_resample_again_reads_only_scores_and_handles_k_0(spark, tmp_path):
    config = pile_config(tmp_path / "run", num_to_sample=20, seed=1)
    first = run_pipeline(spark, config)
    assert [first[s]["skipped"] for s in ("count", "fit", "score", "resample")] == [False] * 4
    again = run_pipeline(spark, pile_config(tmp_path / "run", num_to_sample=0, seed=1))
    assert [again[s]["skipped"] for s in ("count", "fit", "score", "resample")] == [True, True, True, False]
    assert spark.read.parquet(str(tmp_path / "run" / "output")).count() == 0
    assert again["resample"]["rows_out"] == 0


def test_duplicate_ids_are_named(spark, tmp_path):
    copy = tmp_path / "copy" / "pile.jsonl"  # the same documents in two files (one file twice is refused)
    copy.parent.mkdir()
    shutil.copy(PILE, copy)
    config = RunConfig(
        run_dir=str(tmp_path / "run"),
        raw=DatasetConfig(paths=(str(PILE), str(copy)), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=5),
        report=NO_REPORT,
    )
    # Found by the count stage's pass, which then does not complete: nothing after it starts.
    with pytest.raises(InputError, match=r"id_col 'id': 1,000 document ids occur more than once, e.g. '\d+' \(2x\)"):
        run_pipeline(spark, config)
    assert read_record(spark, str(tmp_path / "run" / "counts")) is None
    assert not (tmp_path / "run" / "scores").exists()
    assert not (tmp_path / "run" / "selection").exists()


def test_null_ids_are_caught_by_the_count_stage(spark, tmp_path):
    rows = read_jsonl(PILE)[:150]
    rows[7]["id"] = None
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    config = RunConfig(
        run_dir=str(tmp_path / "run"),
        raw=DatasetConfig(paths=(raw,), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=5),
        report=NO_REPORT,
    )
    with pytest.raises(InputError, match=r"id_col 'id': 1 documents have a null id"):
        run_pipeline(spark, config)
    assert read_record(spark, str(tmp_path / "run" / "counts")) is None
    assert not (tmp_path / "run" / "selection").exists()


def test_scores_from_another_config_are_refused(spark, tmp_path):
    run_pipeline(spark, pile_config(tmp_path / "run", num_to_sample=5), stages=("count", "fit", "score"))
    changed = pile_config(tmp_path / "run", num_to_sample=5)
    changed = RunConfig(**{**changed.__dict__, "features": changed.features.__class__(num_buckets=5000)})
    with pytest.raises(StageOrderError, match=r"other settings \(features.num_buckets: 10000 -> 5000\)"):
        run_pipeline(spark, changed, stages=("resample",))
