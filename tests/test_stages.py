"""Stage outputs (schemas and values, with chispa), null texts, the fit sample, and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from conftest import PILE, read_jsonl, write_jsonl
from data_selection.hashed_ngram_dsir import get_ngram_counts
from pyspark.sql.types import DoubleType, IntegerType, LongType, StructField, StructType

from dsir_spark import ConfigError, HashedNgramDSIR, __version__
from dsir_spark.config import DatasetConfig, FitConfig, ResampleConfig, RunConfig, TokensConfig, load_config
from dsir_spark.estimators.base import FitError
from dsir_spark.featurizer.features import tokenize
from dsir_spark.stages.count import count_stage
from dsir_spark.storage.io import InputError
from dsir_spark.storage.records import read_json

NUM_BUCKETS = 64
RAW = [
    {"id": 1, "text": "the cat sat on the mat"},
    {"id": 2, "text": "The dog, the cat!"},
    {"id": 3, "text": None},
    {"id": 4, "text": ""},
]
TARGET = [{"id": 9, "text": "a cat and a mat"}]


@pytest.fixture(scope="module")
def small_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    raw = write_jsonl(root / "raw.jsonl", RAW)
    target = write_jsonl(root / "target.jsonl", TARGET)
    dsir = HashedNgramDSIR(raw, target, str(root / "run"), id_col="id", num_buckets=NUM_BUCKETS, spark=spark)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    return root / "run", dsir


def expected_counts(texts):
    return sum(get_ngram_counts(t or "", n=2, num_buckets=NUM_BUCKETS) for t in texts)


def test_counts_table_schema_and_values(spark, small_run):
    run_dir, _ = small_run
    actual = spark.read.parquet(f"{run_dir}/counts/raw")
    counts = expected_counts([r["text"] for r in RAW])
    expected = spark.createDataFrame(
        [(b, int(c)) for b, c in enumerate(counts)],
        StructType([StructField("bucket", IntegerType()), StructField("count", LongType())]),
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_counts_json_reports_documents_tokens_and_null_texts(spark, small_run):
    run_dir, _ = small_run
    stats = read_json(spark, f"{run_dir}/counts/raw.json")
    assert stats["documents"] == 4
    assert stats["null_texts"] == 1
    assert stats["tokens"] == 6 + 6  # "the cat sat on the mat" + "the dog , the cat !"
    assert stats["num_features"] == 11 + 11
    assert stats["num_features"] == int(expected_counts([r["text"] for r in RAW]).sum())
    assert stats["features"] == {"ngrams": 2, "num_buckets": NUM_BUCKETS, "hash": "sha256", "tokenizer": "wordpunct"}
    assert stats["dataset"]["text_col"] == "text"


def test_model_table_schema_and_values(spark, small_run):
    run_dir, dsir = small_run
    raw = expected_counts([r["text"] for r in RAW])
    target = expected_counts([r["text"] for r in TARGET])
    log_diff = np.log(target / target.sum() + 1e-8) - np.log(raw / raw.sum() + 1e-8)
    actual = spark.read.parquet(f"{run_dir}/model/log_diff").select("bucket", "log_diff")
    expected = spark.createDataFrame(
        [(b, float(v)) for b, v in enumerate(log_diff)],
        StructType([StructField("bucket", IntegerType()), StructField("log_diff", DoubleType())]),
    )
    assert_approx_df_equality(actual, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)
    meta = read_json(spark, f"{run_dir}/model/model.json")
    assert meta["features"] == {"ngrams": 2, "num_buckets": NUM_BUCKETS, "hash": "sha256", "tokenizer": "wordpunct",
                                "hash_definition": "sha256-hexdigest-mod-v1"}
    assert meta["raw"]["tokens"] == 12 and meta["targets"]["target_0"]["tokens"] == 5
    assert meta["version"] == __version__


def test_scores_schema_and_values(spark, small_run):
    run_dir, dsir = small_run
    actual = spark.read.parquet(f"{run_dir}/scores")
    rows = []
    for r in RAW:
        counts = get_ngram_counts(r["text"] or "", n=2, num_buckets=NUM_BUCKETS)
        rows.append((r["id"], len((r["text"] or "").split()) if r["id"] == 1 else {2: 6, 3: 0, 4: 0}[r["id"]],
                     float(np.dot(dsir.log_diff, counts))))
    expected = spark.createDataFrame(
        rows,
        StructType([StructField("id", LongType()), StructField("num_tokens", IntegerType()),
                    StructField("log_weight", DoubleType())]),
    )
    assert_approx_df_equality(actual, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_model_save_and_load_round_trip(spark, small_run, tmp_path):
    _, dsir = small_run
    dsir.save(str(tmp_path / "model"))
    other = HashedNgramDSIR("unused", "unused", str(tmp_path / "other"), num_buckets=NUM_BUCKETS, spark=spark)
    other.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(other.log_diff, dsir.log_diff)
    np.testing.assert_array_equal(other.raw_probs, dsir.raw_probs)


def test_fit_sample_takes_about_the_requested_tokens_deterministically(spark, tmp_path):
    def sampled(seed):
        config = RunConfig(
            run_dir=str(tmp_path / f"run{seed}"),
            raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
            targets=(DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),),
            fit=FitConfig(num_tokens_to_fit=60_000, sample_seed=seed),
        )
        record = count_stage(spark, config)
        return record["raw"]

    first, again, other = sampled(0), sampled(0), sampled(1)
    total = sum(len(tokenize(r["contents"])) for r in read_jsonl(PILE))  # 146,199 tokens in all
    assert first == again
    assert first["documents"] < 1000 and first != other
    assert 0.5 * 60_000 < first["tokens"] < 1.6 * 60_000 < total


# ---------------------------------------------------------------------------------------------- bad input


def make(spark, tmp_path, raw_rows=None, target_rows=None, **kwargs):
    raw = write_jsonl(tmp_path / "raw.jsonl", raw_rows if raw_rows is not None else RAW)
    target = write_jsonl(tmp_path / "target.jsonl", target_rows if target_rows is not None else TARGET)
    options = {"id_col": "id", "num_buckets": NUM_BUCKETS, "spark": spark, **kwargs}
    return HashedNgramDSIR(options.pop("raw", raw), options.pop("target", target), str(tmp_path / "run"), **options)


def assert_nothing_written(tmp_path: Path):
    assert not (tmp_path / "run" / "counts").exists()


def test_transform_takes_column_names(spark, small_run, tmp_path):
    run_dir, dsir = small_run
    frame = spark.createDataFrame([(r["id"], r["text"]) for r in RAW], "doc_id long, body string")
    scored = dsir.model.transform(frame, text_col="body", id_col="doc_id")
    assert_df_equality(scored, spark.read.parquet(f"{run_dir}/scores"), ignore_row_order=True, ignore_nullable=True)


def test_missing_text_column(spark, tmp_path):
    dsir = make(spark, tmp_path, text_col="body")
    with pytest.raises(InputError, match=r"dataset raw: text column 'body' not found; columns are \['id', 'text'\]"):
        dsir.fit_importance_estimator("all")
    assert_nothing_written(tmp_path)


def test_text_column_that_is_not_a_string(spark, tmp_path):
    dsir = make(spark, tmp_path, raw_rows=[{"id": 1, "text": 42}])
    with pytest.raises(InputError, match=r"dataset raw: text column 'text' has type bigint, not string"):
        dsir.fit_importance_estimator("all")
    assert_nothing_written(tmp_path)


def test_path_that_does_not_exist(spark, tmp_path):
    dsir = make(spark, tmp_path, raw=str(tmp_path / "nowhere" / "*.jsonl"))
    with pytest.raises(InputError, match=r"dataset raw: path .*nowhere.* does not exist"):
        dsir.fit_importance_estimator("all")
    assert_nothing_written(tmp_path)


def test_empty_target_file(spark, tmp_path):
    dsir = make(spark, tmp_path, target_rows=[])
    with pytest.raises(InputError, match=r"dataset target_0: .*target.jsonl has no documents"):
        dsir.fit_importance_estimator("all")
    assert_nothing_written(tmp_path)


def test_target_without_tokens(spark, tmp_path):
    dsir = make(spark, tmp_path, target_rows=[{"id": 1, "text": ""}, {"id": 2, "text": None}])
    with pytest.raises(FitError, match=r"target dataset target_0 .* has no tokens in column 'text' "
                                       r"\(2 documents, 1 null texts\)"):
        dsir.fit_importance_estimator("all")
    assert not (tmp_path / "run" / "counts" / "raw").exists()  # failed before the raw pass


@pytest.mark.parametrize("setting,value,message", [
    ("num_buckets", 0, r"features.num_buckets=0; it must be >= 1"),
    ("ngrams", 0, r"features.ngrams=0; it must be >= 1"),
    ("hash", "md5", r"features.hash='md5'; use one of"),
])
def test_bad_feature_settings(spark, tmp_path, setting, value, message):
    with pytest.raises(ConfigError, match=message):
        make(spark, tmp_path, **{setting: value})


def test_nested_text_column_and_generated_ids(spark, tmp_path):
    rows = [{"meta": {"body": f"document number {i} " * 3}} for i in range(5)]
    dsir = make(spark, tmp_path, raw_rows=rows, target_rows=rows[:2], text_col="meta.body", id_col=None)
    dsir.fit_importance_estimator("all")
    dsir.compute_importance_weights()
    scores = spark.read.parquet(str(tmp_path / "run" / "scores"))
    ids = [r.id for r in scores.collect()]
    assert len(set(ids)) == 5 and all(len(i) == 32 for i in ids)
    # The same ids on another partitioning of the same data.
    again = spark.read.parquet(str(tmp_path / "run" / "scores")).repartition(3)
    assert sorted(r.id for r in again.collect()) == sorted(ids)
    assert json.dumps(sorted(ids))


def test_target_laplace_smoothing_and_token_shares():
    from dsir_spark.config import FeatureConfig
    from dsir_spark.estimators.ngram_ratio import fit_model
    from dsir_spark.featurizer.counts import BucketCounts

    raw = BucketCounts(np.array([5, 3, 2, 0]), documents=2, tokens=6, null_texts=0)
    t0 = BucketCounts(np.array([1, 0, 0, 1]), documents=1, tokens=2, null_texts=0)
    t1 = BucketCounts(np.array([0, 4, 2, 0]), documents=1, tokens=6, null_texts=0)
    features = FeatureConfig(num_buckets=4)
    model = fit_model(raw, [t0, t1], ["a", "b"], features, FitConfig(target_laplace_smoothing=0.5,
                                                                       separate_targets=True))
    smoothed = (np.array([1, 0, 0, 1]) + 0.5) / (2 + 0.5 * 4)
    np.testing.assert_allclose(model.target_probs[0], smoothed, rtol=1e-15)
    np.testing.assert_allclose(model.log_diff[0], np.log(smoothed + 1e-8) - np.log(np.array([.5, .3, .2, 0]) + 1e-8),
                               rtol=1e-12)
    assert model.target_proportions == [0.25, 0.75]  # each target's share of target tokens
    assert model.weight_columns() == ["log_weight_0", "log_weight_1"]
    given = fit_model(raw, [t0, t1], ["a", "b"], features,
                      FitConfig(separate_targets=True, target_proportions=(1.0, 3.0)))
    assert given.target_proportions == [0.25, 0.75]
    together = fit_model(raw, [t0, t1], ["a", "b"], features, FitConfig())
    np.testing.assert_array_equal(together.target_probs[0], np.array([1, 4, 2, 1]) / 8)


def test_paths_starting_with_a_tilde_are_in_the_home_folder(spark, tmp_path, monkeypatch):
    # YAML does not expand ~: Spark made a folder named "~" while Python wrote in the home folder.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_jsonl(tmp_path / "home" / "data" / "raw.jsonl", RAW)
    write_jsonl(tmp_path / "home" / "data" / "target.jsonl", TARGET)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(
        "run_dir: ~/runs/x\nraw: {paths: [~/data/raw.jsonl], id_col: id}\ntargets: [{paths: [~/data/target.jsonl]}]\n"
        f"features: {{num_buckets: {NUM_BUCKETS}}}\nfit: {{model: ~/m}}\nresample: {{out_dir: ~/out, scores: ~/s}}\n"
        "tokens: {tokenizer: ~/tok.json}\n")
    config = load_config(str(tmp_path / "run.yaml"))
    home = str(tmp_path / "home")
    assert (config.run_dir, config.raw.paths, config.targets[0].paths) == (
        f"{home}/runs/x", (f"{home}/data/raw.jsonl",), (f"{home}/data/target.jsonl",))
    assert (config.fit.model, config.resample.out_dir, config.resample.scores, config.tokens.tokenizer) == (
        f"{home}/m", f"{home}/out", f"{home}/s", f"{home}/tok.json")
    count_stage(spark, dataclasses.replace(config, fit=FitConfig(), resample=ResampleConfig(num_to_sample=1),
                                           tokens=TokensConfig()))
    assert read_json(spark, f"{home}/runs/x/counts/raw.json")["documents"] == len(RAW)
    assert not (tmp_path / "~").exists()
