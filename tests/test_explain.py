"""A report that says why, and explanations of single documents."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import PILE, TARGET_C

from dsir_spark.cli import main
from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.featurizer.features import sha256_bucket
from dsir_spark.featurizer.ngrams import STRINGS_PER_BUCKET
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run import directory as rundir
from dsir_spark.run.directory import stage_dir
from dsir_spark.stages.explain import explain
from dsir_spark.storage.io import InputError

# How often the run below read each dataset (by name).
READS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    config = RunConfig(
        run_dir=str(tmp_path_factory.mktemp("explain") / "run"),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=50),
        report=ReportConfig(label_col="metadata.pile_set_name"),
    )
    read_dataset = rundir.read_dataset

    def counted(spark, dataset, schemas=None):
        READS[dataset.name] += 1
        return read_dataset(spark, dataset, schemas)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rundir, "read_dataset", counted)
        return config, run_pipeline(spark, config)


def test_a_run_reads_each_dataset_once_for_all_its_stages(run):
    config, _ = run
    assert READS == {config.raw.name: 1, config.targets[0].name: 1}


def test_the_report_names_the_targets_distinctive_words_by_their_buckets(spark, run):
    config, records = run
    report = records["report"]["report"]
    for row in report["ngrams"]["toward"] + report["ngrams"]["away"]:  # each string is one of its bucket's
        assert 0 < len(row["ngrams"]) <= STRINGS_PER_BUCKET
        assert {sha256_bucket(gram, config.features.num_buckets) for gram in row["ngrams"]} == {row["bucket"]}
    toward = [gram for row in report["ngrams"]["toward"] for gram in row["ngrams"]]
    # The C target is a source file's license header: its words pull toward it.
    assert {"software", "copyright", "permission", "*"} <= set(toward)
    away = report["ngrams"]["away"]
    assert len(away) == 30 and all(row["log_ratio"] < 0 for row in away)
    assert sum(report["lengths"]["selected"]) + sum(report["lengths"]["outside"]["selected"].values()) == 50
    assert report["lengths"]["raw_documents"] == "all"
    assert "## N-grams that pull documents toward the target" in (
        open(f"{stage_dir(config, 'report')}/report.md", encoding="utf-8").read())


def test_an_explanation_adds_up_to_the_documents_score_and_names_its_ngrams(spark, run, capsys, caplog):
    config, _ = run
    scores = spark.read.parquet(stage_dir(config, "score"))
    best = scores.orderBy("log_weight", ascending=False).first()
    worst = scores.where("num_tokens > 50").orderBy("log_weight").first()
    explained = {e["id"]: e for e in explain(spark, config, [best["id"], worst["id"]], top=5)}
    for row in (best, worst):
        weight = explained[str(row["id"])]["weights"][0]
        assert weight["log_weight"] == row["log_weight"]  # the score stage's value, bit for bit
        assert explained[str(row["id"])]["num_tokens"] == row["num_tokens"]
    top = explained[str(best["id"])]["weights"][0]["toward"]
    assert len(top) == 5 and {"software", "*"} & {r["ngram"] for r in top}
    assert all(r["total"] == pytest.approx(r["count"] * r["log_ratio"]) for r in top)
    assert explained[str(worst["id"])]["weights"][0]["away"][0]["total"] < -10

    argv = ["explain", "--config", "conf/sample.yaml", "--set", f"run_dir={config.run_dir}",
            "--set", "resample.num_to_sample=50", "--set", "fit.num_tokens_to_fit=all", "--id", str(best["id"])]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"document {best['id']}: {best['num_tokens']} tokens") and "'software'" in out
    # conf/sample.yaml names other input files than this run's: the model is explained, and that is said
    assert "explain: the input files changed since the fit stage ran" in caplog.text
    assert "; explaining the model that is there" in caplog.text
    caplog.clear()
    explain(spark, config, [best["id"]])
    assert "explaining the model that is there" not in caplog.text
    with pytest.raises(InputError, match="explain: no document with id 123456789"):
        explain(spark, config, [123456789])


def test_the_python_api_explains_like_the_command(spark, run):
    from dsir_spark import HashedNgramDSIR

    config, _ = run
    dsir = HashedNgramDSIR(str(PILE), str(TARGET_C), config.run_dir, text_col="contents", id_col="id", spark=spark)
    dsir.load()
    assert dsir.explain([0, 9], top=4) == explain(spark, config, [0, 9], top=4)


def test_explain_without_a_fitted_model_or_an_id_says_what_to_run(spark, run, tmp_path, capsys):
    import dataclasses

    from dsir_spark.run.directory import StageOrderError

    config, _ = run
    fresh = dataclasses.replace(config, run_dir=str(tmp_path / "never-run"))
    with pytest.raises(StageOrderError, match=r"the fit stage has no complete output in .*never-run/model; run "
                                              r"dsir-spark run first"):
        explain(spark, fresh, [0])
    assert main(["explain", "--config", "conf/sample.yaml", "--set", f"run_dir={config.run_dir}"]) == 2
    assert capsys.readouterr().err.strip() == ("dsir-spark: config error: explain needs at least one --id (a raw "
                                               "document's id)")
