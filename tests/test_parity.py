"""Parity with the reference package: same bucket distributions and the same log weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EDGE_TEXTS, PILE, TARGET_C, TARGET_WIKI, read_jsonl, write_jsonl
from reference import run_reference

from dsir_spark import HashedNgramDSIR

RTOL = 1e-9


def spark_run(spark, raw, targets, run_dir, **kwargs):
    dsir = HashedNgramDSIR(raw, targets, str(run_dir), text_col="contents", id_col="id", spark=spark, **kwargs)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    scores = spark.read.parquet(f"{run_dir}/scores").toPandas().sort_values("id").reset_index(drop=True)
    return dsir, scores


@pytest.fixture(scope="module")
def edge_data(tmp_path_factory):
    """Raw = hand-written edge cases + 60 Pile documents; target = the edge cases and the C file."""
    root = tmp_path_factory.mktemp("edge")
    pile = read_jsonl(PILE)[:60]
    edge = [{"contents": t, "id": 10_000 + i} for i, t in enumerate(EDGE_TEXTS)]
    raw = write_jsonl(root / "raw.jsonl", edge + [{"contents": r["contents"], "id": r["id"]} for r in pile])
    target = write_jsonl(root / "target.jsonl", edge + read_jsonl(TARGET_C))
    return root, raw, target


def test_pile_sample_matches_reference(spark, tmp_path):
    ref = run_reference([str(PILE)], [str(TARGET_C)], tmp_path / "ref")
    ours, scores = spark_run(spark, str(PILE), str(TARGET_C), tmp_path / "ours")
    np.testing.assert_array_equal(ours.raw_probs, ref.dsir.raw_probs)
    np.testing.assert_array_equal(ours.target_probs, ref.dsir.target_probs)
    np.testing.assert_array_equal(ours.log_diff, ref.dsir.log_diff)
    assert len(scores) == len(ref.log_weights) == 1000
    np.testing.assert_allclose(scores["log_weight"].to_numpy(), ref.log_weights, rtol=RTOL)
    # Document lengths agree wherever the reference's length formula is exact (any non-empty text).
    np.testing.assert_array_equal(scores["num_tokens"].to_numpy(), ref.lengths)


def test_edge_cases_match_reference(spark, tmp_path, edge_data):
    _, raw, target = edge_data
    ref = run_reference([raw], [target], tmp_path / "ref")
    ours, scores = spark_run(spark, raw, target, tmp_path / "ours")
    np.testing.assert_array_equal(ours.raw_probs, ref.dsir.raw_probs)
    np.testing.assert_array_equal(ours.target_probs, ref.dsir.target_probs)
    order = np.argsort([r["id"] for r in read_jsonl(type(PILE)(raw))], kind="stable")
    np.testing.assert_allclose(scores["log_weight"].to_numpy(), ref.log_weights[order], rtol=RTOL, atol=0)


def test_trigrams_and_50000_buckets_match_reference(spark, tmp_path, edge_data):
    _, raw, target = edge_data
    ref = run_reference([raw], [target], tmp_path / "ref", ngrams=3, num_buckets=50000)
    ours, scores = spark_run(spark, raw, target, tmp_path / "ours", ngrams=3, num_buckets=50000)
    np.testing.assert_array_equal(ours.raw_probs, ref.dsir.raw_probs)
    np.testing.assert_array_equal(ours.target_probs, ref.dsir.target_probs)
    order = np.argsort([r["id"] for r in read_jsonl(type(PILE)(raw))], kind="stable")
    np.testing.assert_allclose(scores["log_weight"].to_numpy(), ref.log_weights[order], rtol=RTOL, atol=0)


def test_two_separate_targets_match_reference(spark, tmp_path):
    targets = [str(TARGET_C), str(TARGET_WIKI)]
    ref = run_reference([str(PILE)], targets, tmp_path / "ref", separate_targets=True)
    ours, scores = spark_run(spark, str(PILE), targets, tmp_path / "ours", separate_targets=True)
    np.testing.assert_array_equal(ours.raw_probs, ref.dsir.raw_probs)
    np.testing.assert_array_equal(ours.target_probs, ref.dsir.target_probs)
    for t in range(2):
        np.testing.assert_allclose(scores[f"log_weight_{t}"].to_numpy(), ref.log_weights[:, t], rtol=RTOL)
