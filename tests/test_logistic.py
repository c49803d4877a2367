"""fit.estimator: logistic, a class-balanced L2 logistic regression on log1p(bucket counts) (Spark MLlib),
checked against an independent numpy Newton solution, its scores against numpy, and the whole run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import PILE, read_jsonl, write_jsonl

from dsir_spark.config import (
    ConfigError,
    DatasetConfig,
    FeatureConfig,
    FitConfig,
    ReportConfig,
    ResampleConfig,
    RunConfig,
)
from dsir_spark.estimators.classifier import LogisticModel, roc_auc
from dsir_spark.estimators.ngram_ratio import DSIRModel
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.features import Featurizer, make_featurizer
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import stage_dir
from dsir_spark.stages.explain import explain

DOMAIN = "Github"
FEATURES = FeatureConfig(ngrams=2, num_buckets=256, hash="xxhash64")
REGULARIZATION = 1e-3


def split() -> tuple[list[dict], list[dict]]:
    """Half of the Github documents as the target; raw is every other document."""
    docs = [{"id": r["id"], "text": r["contents"], "label": r["metadata"]["pile_set_name"]} for r in read_jsonl(PILE)]
    target = [d for d in docs if d["label"] == DOMAIN][::2]
    held = {d["id"] for d in target}
    return [d for d in docs if d["id"] not in held], target


def config_for(run_dir, raw_paths, target_paths, target_id_col="id", **fit) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=tuple(raw_paths), id_col="id"),
        targets=tuple(DatasetConfig(paths=(p,), id_col=target_id_col) for p in target_paths),
        features=FEATURES,
        fit=FitConfig(num_tokens_to_fit="all", estimator="logistic", regularization=REGULARIZATION, **fit),
        resample=ResampleConfig(num_to_sample=60, min_example_length=20, output_format="json"),
        report=ReportConfig(enabled=False),
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    raw, target = split()
    folder = tmp_path_factory.mktemp("logistic")
    return raw, target, write_jsonl(folder / "raw.jsonl", raw), write_jsonl(folder / "target.jsonl", target), folder


@pytest.fixture(scope="module")
def run(spark, data):
    """Every raw and target document trains (no held-out share), so numpy can solve the same problem."""
    raw, target, raw_path, target_path, folder = data
    config = config_for(folder / "run", [raw_path], [target_path], held_out=0.0)
    return config, run_pipeline(spark, config)


def design(texts: list[str]) -> np.ndarray:
    """log1p(bucket counts) as a dense matrix, from the pure-Python featurizer."""
    sparse = Featurizer(FEATURES).sparse_counts(texts)
    matrix = np.zeros((len(texts), FEATURES.num_buckets))
    for d in range(len(texts)):
        cut = slice(sparse.indptr[d], sparse.indptr[d + 1])
        matrix[d, sparse.buckets[cut]] = np.log1p(sparse.counts[cut])
    return matrix


def newton(x: np.ndarray, y: np.ndarray, weights: np.ndarray, regularization: float) -> np.ndarray:
    """argmin over (b, w) of sum_i weights_i * logloss_i / sum(weights) + regularization / 2 * |w|^2, by Newton's
    method (the intercept b, in front, is not penalized)."""
    design_matrix = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design_matrix.shape[1])
    penalty = np.full(len(beta), regularization)
    penalty[0] = 0.0
    scale = weights / weights.sum()
    for _ in range(100):
        p = 1 / (1 + np.exp(-design_matrix @ beta))
        gradient = design_matrix.T @ (scale * (p - y)) + penalty * beta
        hessian = design_matrix.T @ (design_matrix * (scale * p * (1 - p))[:, None]) + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-12:
            break
    return beta


def test_the_classifier_equals_an_independent_newton_solution_and_scores_as_numpy_does(spark, data, run):
    raw, target, *_ = data
    config, records = run
    model = load_model(spark, stage_dir(config, "fit"))
    assert isinstance(model, LogisticModel) and records["fit"]["estimator"] == "logistic"
    texts = [d["text"] for d in target] + [d["text"] for d in raw]
    y = np.array([1.0] * len(target) + [0.0] * len(raw))
    # Class-balanced: each class weighs half of all documents.
    weights = np.where(y == 1, len(y) / (2 * len(target)), len(y) / (2 * len(raw)))
    beta = newton(design(texts), y, weights, REGULARIZATION)
    assert model.intercepts[0] == pytest.approx(beta[0], abs=1e-4)
    np.testing.assert_allclose(model.coefficients[0], beta[1:], atol=1e-4)
    training = records["fit"]["training"]["target_0"]
    assert (training["positives"], training["negatives"]) == (len(target), len(raw))
    assert model.prior_log_ratios[0] == 0.0  # balanced classes: the odds are the density ratio

    # log_weight = intercept + coefficients . log1p(counts), from the compiled scorer in the score stage.
    scores = {r["id"]: r for r in spark.read.parquet(stage_dir(config, "score")).collect()}
    expected = model.intercepts[0] + design([d["text"] for d in raw]) @ model.coefficients[0]
    got = np.array([scores[d["id"]]["log_weight"] for d in raw])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_model_saves_and_loads_and_the_run_selects_exactly_k_seeded_on_any_partitioning(spark, data, run,
                                                                                            tmp_path):
    raw, target, raw_path, target_path, _ = data
    config, records = run
    model = load_model(spark, stage_dir(config, "fit"))
    model.save(spark, str(tmp_path / "copy"))
    again = LogisticModel.load(spark, str(tmp_path / "copy"))
    np.testing.assert_array_equal(again.coefficients, model.coefficients)
    assert again.intercepts.tolist() == model.intercepts.tolist() and again.target_names == model.target_names
    with pytest.raises(ValueError, match="is a 'logistic' model, not 'ngram_ratio'"):
        DSIRModel.load(spark, str(tmp_path / "copy"))

    def selected(run_config):
        return sorted(json.loads(line)["id"] for path in (Path(run_config.run_dir) / "output").glob("*.json")
                      for line in open(path))

    first = selected(config)
    assert len(first) == 60 == records["resample"]["rows_out"]
    # The same documents in five files, and the target elsewhere with ids derived from its path (the
    # samples go by text): the same classifier bit for bit, the same selection.
    parts = [write_jsonl(tmp_path / f"raw_{i}.jsonl", raw[i::5]) for i in range(5)]
    moved_target = write_jsonl(tmp_path / "elsewhere" / "target.jsonl", target)
    split_config = config_for(tmp_path / "split", parts, [moved_target], target_id_col=None, held_out=0.0)
    run_pipeline(spark, split_config)
    np.testing.assert_array_equal(load_model(spark, stage_dir(split_config, "fit")).coefficients, model.coefficients)
    assert selected(split_config) == first
    # Another seed, another selection.
    reseeded = config_for(tmp_path / "seed", [raw_path], [target_path], held_out=0.0)
    reseeded = replace(reseeded, resample=replace(reseeded.resample, seed=1))
    run_pipeline(spark, reseeded)
    assert selected(reseeded) != first


def test_an_explanation_adds_up_to_the_classifiers_score(spark, data, run):
    raw, *_ = data
    config, _ = run
    model = load_model(spark, stage_dir(config, "fit"))
    scores = spark.read.parquet(stage_dir(config, "score")).orderBy("log_weight", ascending=False).first()
    weight = explain(spark, config, [scores["id"]], top=1000)[0]["weights"][0]
    assert weight["log_weight"] == scores["log_weight"]
    assert weight["constant"] == model.intercepts[0]
    parts = model.contributions(next(d["text"] for d in raw if d["id"] == scores["id"]), 0)
    assert weight["constant"] + sum(c.total for c in parts) == pytest.approx(weight["log_weight"], abs=1e-9)


def test_held_out_documents_measure_the_classifier_and_separate_targets_get_one_each(spark, data, tmp_path):
    raw, target, raw_path, target_path, _ = data
    other = [d for d in raw if d["label"] == "PubMed Central"][:40]
    other_path = write_jsonl(tmp_path / "pubmed.jsonl", other)
    config = config_for(tmp_path / "run", [raw_path], [target_path, other_path], separate_targets=True)
    records = run_pipeline(spark, config, stages=("count", "fit", "score"))
    model = load_model(spark, stage_dir(config, "fit"))
    assert model.weight_columns() == ["log_weight_0", "log_weight_1"] and model.coefficients.shape == (2, 256)
    training = records["fit"]["training"]
    assert set(training) == {"target_0", "target_1"}
    for name, docs in (("target_0", target), ("target_1", other)):
        measured = training[name]["held_out"]
        # every document is either trained on or held out
        assert training[name]["positives"] + measured["positives"] == len(docs)
        assert training[name]["negatives"] + measured["negatives"] == len(raw)
        assert 0.5 < measured["auc"] <= 1.0 and measured["log_loss"] > 0
    scores = spark.read.parquet(stage_dir(config, "score"))
    assert set(scores.columns) >= {"log_weight_0", "log_weight_1"} and scores.count() == len(raw)
    # The held-out documents are chosen by their text: the target moved, with ids derived from its new
    # path, gives the same split and the same classifier.
    moved = write_jsonl(tmp_path / "moved" / "pubmed.jsonl", other)
    again = config_for(tmp_path / "again", [raw_path], [target_path, moved], target_id_col=None,
                       separate_targets=True)
    records = run_pipeline(spark, again, stages=("count", "fit"))
    assert records["fit"]["training"] == training
    np.testing.assert_array_equal(load_model(spark, stage_dir(again, "fit")).coefficients, model.coefficients)


def test_roc_auc_counts_pairs_and_halves_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300).astype(float)
    scores = np.round(rng.normal(size=300) + labels, 1)  # many ties
    positives, negatives = scores[labels == 1], scores[labels == 0]
    pairs = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    assert roc_auc(labels, scores) == pytest.approx(pairs / (len(positives) * len(negatives)), abs=1e-12)


def test_compiled_and_python_sublinear_scores_are_the_same_doubles():
    texts = [r["contents"] for r in read_jsonl(PILE)][:200] + [None, "", "a a a b"]
    rng = np.random.default_rng(0)
    for config in (FeatureConfig(hash="sha256"), FeatureConfig(ngrams=3, hash="xxhash64", num_buckets=777)):
        table = rng.normal(size=(2, config.num_buckets))
        python, compiled = Featurizer(config), make_featurizer(config, "compiled")
        assert compiled.name == "compiled"
        for a, b in ((python.score(texts, table, True), compiled.score(texts, table, True)),):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        a, b = python.score_chunks(texts, table, 50, 5, True), compiled.score_chunks(texts, table, 50, 5, True)
        np.testing.assert_array_equal(a.sums, b.sums)
        one, two = python.sparse_counts(texts), compiled.sparse_counts(texts)
        for name in ("indptr", "buckets", "counts"):
            np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
        # "a a a b": 4 unigrams, 3 bigrams (and 2 trigrams), counted by bucket
        assert one.counts[one.indptr[-2]:one.indptr[-1]].sum() == 4 + 3 + (2 if config.ngrams == 3 else 0)


@pytest.mark.parametrize("setting, message", [
    ({"estimator": "svm"}, "fit.estimator='svm'"),
    ({"negatives": 0}, "fit.negatives=0"),
    ({"regularization": -1.0}, "fit.regularization=-1.0"),
    ({"held_out": 1.0}, "fit.held_out=1.0"),
])
def test_bad_classifier_settings_are_named(setting, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        FitConfig(**setting)


def test_the_report_and_chunked_scores_work_with_the_classifier(spark, data, run):
    raw, *_ = data
    config, _ = run
    reported = replace(config, report=ReportConfig(label_col="label"))
    records = run_pipeline(spark, reported)
    assert all(records[stage]["skipped"] for stage in ("count", "fit", "score", "resample"))
    report = records["report"]["report"]
    assert report["estimator"] == "logistic" and report["ngrams"]["weight"] == "classifier coefficient"
    assert report["kl_reduction"]["selected"] > report["kl_reduction"]["random"]
    assert report["labels"]["shares"]["selected"][DOMAIN] > report["labels"]["shares"]["raw"][DOMAIN]
    markdown = open(f"{stage_dir(config, 'report')}/report.md", encoding="utf-8").read()
    assert "| n-grams (most frequent in the bucket first) | bucket | classifier coefficient | target_prob |" in markdown

    # Chunks: each chunk's own log1p counts, plus the intercept.
    model = load_model(spark, stage_dir(config, "fit"))
    docs = spark.createDataFrame([(d["id"], d["text"]) for d in raw[:50]], "id long, text string")
    chunks = model.transform(docs, chunk_tokens=40, chunk_min_tokens=5).collect()
    texts = {d["id"]: d["text"] for d in raw[:50]}
    pieces = [texts[c["dsir_doc_id"]][c["dsir_char_start"]:c["dsir_char_end"]] for c in chunks]
    expected = model.intercepts[0] + design(pieces) @ model.coefficients[0]
    np.testing.assert_allclose([c["log_weight"] for c in chunks], expected, rtol=1e-12, atol=1e-12)


def test_a_length_correction_on_the_classifier_is_warned_about(spark, run):
    config, _ = run
    model = load_model(spark, stage_dir(config, "fit"))
    assert model.length_correction_warning("none") is None
    assert "the classifier's log-odds already weighs length" in model.length_correction_warning("poisson")
    reference = DSIRModel(features=FEATURES, log_diff=np.zeros((1, 256)), raw_probs=np.zeros(256),
                          target_probs=np.zeros((1, 256)), target_names=["t"])
    assert reference.length_correction_warning("poisson") is None
