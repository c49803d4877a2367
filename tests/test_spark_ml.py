"""The estimators as Spark ML citizens: fitted from a DataFrame to the pipeline's own model, transform adds
the weights to the frame it is given, and a Pipeline holding the model is saved and loaded by Spark ML."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import SQLTransformer

from dsir_spark.config import ConfigError, config_from_dict
from dsir_spark.estimators.registry import load_model
from dsir_spark.estimators.spark_ml import ImportanceWeighting, ImportanceWeightModel, load_weighting
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run import directory


@pytest.fixture(scope="module")
def frames(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    rows = read_jsonl(PILE)
    raw = [{"id": r["id"], "text": r["contents"], "source": r["metadata"]["pile_set_name"]} for r in rows]
    target = [{"id": 10_000 + i, "text": r["contents"], "source": "target"} for i, r in enumerate(read_jsonl(TARGET_C))]
    config = config_from_dict({
        "run_dir": str(root / "run"), "raw": {"paths": [write_jsonl(root / "raw.jsonl", raw)], "id_col": "id"},
        "targets": [{"paths": [write_jsonl(root / "target.jsonl", target)]}], "fit": {"num_tokens_to_fit": "all"},
        "resample": {"num_to_sample": 10}, "report": {"enabled": False}})
    run_pipeline(spark, config)
    labeled = spark.createDataFrame([{**r, "is_target": False} for r in raw] + [{**r, "is_target": True}
                                                                                 for r in target])
    return root, labeled, spark.createDataFrame(raw)


def test_the_estimator_fits_the_pipelines_model_and_transform_keeps_every_column(spark, frames):
    root, labeled, raw = frames
    model = ImportanceWeighting(labelCol="is_target").fit(labeled)
    pipeline_model = load_model(spark, str(root / "run" / "model"))
    np.testing.assert_array_equal(model.model.log_diff, pipeline_model.log_diff)
    scored = model.transform(raw)
    assert scored.columns == [*raw.columns, "dsir_num_tokens", "dsir_log_weight"]
    mine = {r["id"]: (r["dsir_num_tokens"], r["dsir_log_weight"]) for r in scored.collect()}
    theirs = {r["id"]: (r["num_tokens"], r["log_weight"]) for r in spark.read.parquet(str(root / "run" / "scores"))
              .collect()}
    assert mine == theirs  # the score stage's weights, bit for bit


def test_a_pipeline_holding_the_model_is_saved_and_loaded_by_spark_ml(spark, frames, tmp_path):
    root, labeled, raw = frames
    pipeline = Pipeline(stages=[SQLTransformer(statement="SELECT *, upper(source) AS label FROM __THIS__"),
                                ImportanceWeighting(labelCol="is_target", weightCol="w", tokensCol="n"),
                                SQLTransformer(statement="SELECT * FROM __THIS__ WHERE w > -2000")])
    fitted = pipeline.fit(labeled)
    fitted.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    model = loaded.stages[1]
    assert isinstance(model, ImportanceWeightModel) and model.getOrDefault("weightCol") == "w"
    assert model.uid == fitted.stages[1].uid
    out = loaded.transform(raw)
    assert out.columns == [*raw.columns, "label", "n", "w"]  # every input column kept
    before = sorted((r["id"], r["w"]) for r in fitted.transform(raw).collect())
    after = sorted((r["id"], r["w"]) for r in out.collect())
    assert before == after and 0 < len(after) < raw.count()
    scores = {r["id"]: r["log_weight"] for r in spark.read.parquet(str(root / "run" / "scores")).collect()}
    assert after == sorted((i, w) for i, w in scores.items() if w > -2000)  # the score stage's weights


def test_a_run_directorys_model_scores_a_new_frame_as_the_score_stage_did(spark, frames):
    root, _, raw = frames
    model = load_weighting(spark, str(root / "run" / "model"))
    snapshot = raw.limit(50).withColumnRenamed("text", "body")
    scored = model.copy({model.textCol: "body"}).transform(snapshot)
    theirs = {r["id"]: r["log_weight"] for r in spark.read.parquet(str(root / "run" / "scores")).collect()}
    assert {r["id"]: r["dsir_log_weight"] for r in scored.collect()} == {i: theirs[i] for i in
                                                                          [r["id"] for r in snapshot.collect()]}


def test_a_new_snapshot_is_scored_and_selected_with_another_runs_model(spark, frames, tmp_path, monkeypatch):
    root, _, raw = frames
    snapshot = [{"id": r["id"], "text": r["text"]} for r in raw.limit(400).collect()]
    data = {"run_dir": str(tmp_path / "snapshot"),
            "raw": {"paths": [write_jsonl(tmp_path / "snapshot.jsonl", snapshot)], "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"model": str(root / "run" / "model")}, "resample": {"num_to_sample": 20},
            "report": {"enabled": False}}
    records = run_pipeline(spark, config_from_dict(data))
    assert list(records) == ["score", "resample", "report"]  # no count, no fit: the model is another run's
    theirs = {r["id"]: r["log_weight"] for r in spark.read.parquet(str(root / "run" / "scores")).collect()}
    mine = {r["id"]: r["log_weight"] for r in spark.read.parquet(str(tmp_path / "snapshot" / "scores")).collect()}
    assert mine == {r["id"]: theirs[r["id"]] for r in snapshot}
    model = records["score"]["model"]
    assert model["path"] == str(root / "run" / "model") and model["estimator"] == "ngram_ratio"
    assert len(model["model_json_sha256"]) == 64
    reads = []  # the model's identity is read once per run, however many stages' settings hold it
    real_read_json = directory.read_json
    monkeypatch.setattr(directory, "read_json", lambda spark, path: reads.append(path) or real_read_json(spark, path))
    again = run_pipeline(spark, config_from_dict(data))
    assert all(r.get("skipped") for r in again.values())
    assert reads.count(f"{root / 'run' / 'model'}/model.json") == 1
    data["fit"]["model"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="fit.model: no complete model at"):
        run_pipeline(spark, config_from_dict(data))


def test_a_threshold_kept_from_one_run_filters_a_later_snapshot_the_same_way(spark, frames, tmp_path):
    root, _, raw = frames
    lowest = spark.read.parquet(str(root / "run" / "selection" / "ids")).agg({"log_weight": "min"}).first()[0]
    snapshot = [{"id": r["id"], "text": r["text"]} for r in raw.orderBy("id").limit(600).collect()]
    data = {"run_dir": str(tmp_path / "later"),
            "raw": {"paths": [write_jsonl(tmp_path / "later.jsonl", snapshot)], "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"model": str(root / "run" / "model")}, "resample": {"min_log_weight": lowest}}
    records = run_pipeline(spark, config_from_dict(data))
    scores = spark.read.parquet(str(root / "run" / "scores")).toPandas().set_index("id")
    wanted = {r["id"] for r in snapshot}
    expected = sorted(i for i, s in scores.iterrows()
                      if i in wanted and s["num_tokens"] >= 100 and s["log_weight"] >= lowest)
    chosen = sorted(r["id"] for r in spark.read.parquet(str(tmp_path / "later" / "selection" / "ids")).collect())
    assert chosen == expected and len(expected) > 0
    assert records["resample"]["min_log_weight"] == lowest and records["resample"]["selected"] == len(expected)
    assert records["report"]["report"]["documents"]["selected"] == len(expected)
    with pytest.raises(ConfigError, match="are both set"):
        config_from_dict({**data, "resample": {"min_log_weight": 0.0, "num_to_sample": 3}})


def test_the_classifier_is_fitted_as_the_pipelines_fit_stage_fits_it(spark, frames, tmp_path):
    root, labeled, raw = frames
    data = {"run_dir": str(tmp_path / "logistic"), "raw": {"paths": [str(root / "raw.jsonl")], "id_col": "id"},
            "targets": [{"paths": [str(root / "target.jsonl")]}],
            "fit": {"num_tokens_to_fit": "all", "estimator": "logistic"}, "resample": {"num_to_sample": 10},
            "report": {"enabled": False}}
    run_pipeline(spark, config_from_dict(data), stages=("count", "fit"))
    theirs = load_model(spark, str(tmp_path / "logistic" / "model"))
    mine = ImportanceWeighting(labelCol="is_target", estimator="logistic").fit(labeled).model
    assert mine.estimator == "logistic"
    np.testing.assert_array_equal(mine.coefficients, theirs.coefficients)
    np.testing.assert_array_equal(mine.intercepts, theirs.intercepts)


def test_a_length_correction_param_adds_the_score_stages_corrected_column(spark, frames, tmp_path):
    root, _, raw = frames
    data = {"run_dir": str(tmp_path / "poisson"), "raw": {"paths": [str(root / "raw.jsonl")], "id_col": "id"},
            "targets": [{"paths": [str(root / "target.jsonl")]}], "fit": {"num_tokens_to_fit": "all"},
            "score": {"length_correction": "poisson"}, "resample": {"num_to_sample": 10},
            "report": {"enabled": False}}
    run_pipeline(spark, config_from_dict(data), stages=("count", "fit", "score"))
    model = load_weighting(spark, str(tmp_path / "poisson" / "model"))
    scored = model.copy({model.lengthCorrection: "poisson", model.weightCol: "log_weight"}).transform(raw)
    assert scored.columns[-2:] == ["log_weight", "log_weight_poisson"]
    theirs = {r["id"]: r["log_weight_poisson"] for r in spark.read.parquet(str(tmp_path / "poisson" / "scores"))
              .collect()}
    assert {r["id"]: r["log_weight_poisson"] for r in scored.collect()} == theirs


def test_a_run_with_another_runs_model_selects_what_that_run_selected_from_the_same_raw(spark, frames, tmp_path):
    root, _, _ = frames
    data = {"run_dir": str(tmp_path / "again"), "raw": {"paths": [str(root / "raw.jsonl")], "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"model": str(root / "run" / "model")}, "resample": {"num_to_sample": 10},
            "report": {"enabled": False}}
    records = run_pipeline(spark, config_from_dict(data))
    assert "count" not in records and "fit" not in records  # skipped: the model is the first run's
    ids = [sorted(r["id"] for r in spark.read.parquet(str(run / "selection" / "ids")).collect())
           for run in (root / "run", tmp_path / "again")]
    assert ids[0] == ids[1] and len(ids[0]) == 10


def test_a_fit_budget_takes_the_count_stages_fit_sample(spark, frames, tmp_path):
    root, labeled, _ = frames
    data = {"run_dir": str(tmp_path / "budget"), "raw": {"paths": [str(root / "raw.jsonl")], "id_col": "id"},
            "targets": [{"paths": [str(root / "target.jsonl")]}],
            "fit": {"num_tokens_to_fit": 30_000, "sample_seed": 4}, "resample": {"num_to_sample": 10},
            "report": {"enabled": False}}
    records = run_pipeline(spark, config_from_dict(data), stages=("count", "fit"))
    assert records["count"]["raw"]["documents"] < 1000  # a sample, not the whole
    theirs = load_model(spark, str(tmp_path / "budget" / "model"))
    mine = ImportanceWeighting(labelCol="is_target", numTokensToFit="30000", sampleSeed=4).fit(labeled).model
    np.testing.assert_array_equal(mine.log_diff, theirs.log_diff)
    np.testing.assert_array_equal(mine.raw_probs, theirs.raw_probs)


def test_the_tokenizer_param_fits_the_pipelines_model_of_that_tokenizer(spark, tmp_path):
    """Chinese text, where wordpunct_cjk's tokens (each character) differ from wordpunct's (each run)."""
    chinese = ["数据选择很重要，语言模型需要好的训练数据。", "今天天气很好，我们去公园散步。",
               "机器学习的模型需要大量的数据。"]
    rows = read_jsonl(PILE)[:300]
    raw = [{"id": r["id"], "text": r["contents"] + (chinese[i % 3] * 5 if i % 4 == 0 else "")}
           for i, r in enumerate(rows)]
    target = [{"id": 10_000 + i, "text": text * 20} for i, text in enumerate(chinese)]
    data = {"run_dir": str(tmp_path / "cjk"), "raw": {"paths": [write_jsonl(tmp_path / "raw.jsonl", raw)],
                                                      "id_col": "id"},
            "targets": [{"paths": [write_jsonl(tmp_path / "target.jsonl", target)]}],
            "features": {"tokenizer": "wordpunct_cjk"}, "fit": {"num_tokens_to_fit": "all"},
            "resample": {"num_to_sample": 10}, "report": {"enabled": False}}
    run_pipeline(spark, config_from_dict(data), stages=("count", "fit"))
    theirs = load_model(spark, str(tmp_path / "cjk" / "model"))
    labeled = spark.createDataFrame([{**r, "is_target": False} for r in raw] + [{**r, "is_target": True}
                                                                                 for r in target])
    mine = ImportanceWeighting(labelCol="is_target", tokenizer="wordpunct_cjk", numTokensToFit="all").fit(labeled)
    assert mine.model.features.tokenizer == "wordpunct_cjk"
    np.testing.assert_array_equal(mine.model.log_diff, theirs.log_diff)
    wordpunct = ImportanceWeighting(labelCol="is_target", numTokensToFit="all").fit(labeled).model
    assert not np.array_equal(wordpunct.log_diff, theirs.log_diff)  # the param is what makes them equal
