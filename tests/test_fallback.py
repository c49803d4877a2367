"""The pure-Python fallback runs the whole sample pipeline with the same results, the stage records say
which featurizer ran, and a model fitted under another hash definition is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality

from dsir_spark.cli import main
from dsir_spark.config import config_from_dict
from dsir_spark.estimators.base import FitError
from dsir_spark.estimators.ngram_ratio import DSIRModel
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import read_record

ROOT = Path(__file__).parent.parent


def sample_config(run_dir: Path, **features):
    data = yaml.safe_load((ROOT / "conf" / "sample.yaml").read_text())
    data["run_dir"] = str(run_dir)
    data["raw"]["paths"] = [str(ROOT / p) for p in data["raw"]["paths"]]
    data["targets"][0]["paths"] = [str(ROOT / p) for p in data["targets"][0]["paths"]]
    data["features"].update(features)
    data["report"] = {"enabled": False}
    return config_from_dict(data)


@pytest.mark.parametrize("mode", ["sha256", "xxhash64"])
def test_the_fallback_runs_the_sample_pipeline_with_the_same_selection(spark, tmp_path, monkeypatch, mode):
    compiled_config = sample_config(tmp_path / "compiled", hash=mode)
    run_pipeline(spark, compiled_config)
    monkeypatch.setenv("DSIR_SPARK_FEATURIZER", "python")
    python_config = sample_config(tmp_path / "python", hash=mode)
    records = run_pipeline(spark, python_config)

    count = read_record(spark, str(tmp_path / "python" / "counts"))
    assert count["featurizer"] == {"requested": "python", "documents_compiled": 0, "documents_python": 1001}
    assert records["score"]["featurizer"]["requested"] == "python"
    compiled_count = read_record(spark, str(tmp_path / "compiled" / "counts"))
    assert compiled_count["featurizer"]["documents_compiled"] == 1001

    def frame(run: str, folder: str):
        return spark.read.parquet(str(tmp_path / run / folder))

    assert_df_equality(frame("python", "scores"), frame("compiled", "scores"), ignore_row_order=True)
    assert_df_equality(frame("python", "counts/raw"), frame("compiled", "counts/raw"), ignore_row_order=True)
    assert_df_equality(frame("python", "selection/ids"), frame("compiled", "selection/ids"), ignore_row_order=True)


def test_a_wrong_featurizer_setting_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DSIR_SPARK_FEATURIZER", "fast")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "raw": {"paths": ["x.jsonl"]},
                                      "targets": [{"paths": ["y.jsonl"]}]}))
    assert main(["run", "--config", str(config)]) == 2
    assert "DSIR_SPARK_FEATURIZER='fast'; use one of ('auto', 'compiled', 'python')" in capsys.readouterr().err


def test_a_model_fitted_under_another_hash_definition_is_refused(spark, tmp_path, capsys):
    config = sample_config(tmp_path / "run", hash="xxhash64")
    run_pipeline(spark, config, stages=("count", "fit"))
    model_json = tmp_path / "run" / "model" / "model.json"
    part = next(model_json.glob("part-*"))
    meta = json.loads(part.read_text())
    assert meta["features"]["hash_definition"] == "xxh64-seed0-splitmix64-golden-v1"
    meta["features"]["hash_definition"] = "xxh3-v0"
    part.write_text(json.dumps(meta) + "\n")
    for checksum in model_json.glob(".*.crc"):  # Hadoop's local checksums would flag the edit
        checksum.unlink()

    with pytest.raises(FitError, match="fitted with hash definition 'xxh3-v0' for hash mode 'xxhash64'"):
        DSIRModel.load(spark, str(tmp_path / "run" / "model"))
    with pytest.raises(FitError, match="fit the model again"):
        run_pipeline(spark, config, stages=("score",))
