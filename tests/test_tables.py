"""Catalog tables in and out: managed tables in the local catalog (the test session's warehouse)."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from conftest import PILE, TARGET_C

from dsir_spark.cli import main
from dsir_spark.config import (
    ConfigError,
    DatasetConfig,
    FitConfig,
    ReportConfig,
    ResampleConfig,
    RunConfig,
    ScoreConfig,
)
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import read_record
from dsir_spark.storage.io import InputError

K = 40


@pytest.fixture(scope="module")
def corpus(spark):
    """corpus.pile and corpus.target_c: the bundled JSON Lines as managed tables."""
    spark.sql("CREATE SCHEMA IF NOT EXISTS corpus")
    spark.read.json(str(PILE)).write.mode("overwrite").saveAsTable("corpus.pile")
    spark.read.json(str(TARGET_C)).write.mode("overwrite").saveAsTable("corpus.target_c")
    yield
    spark.sql("DROP SCHEMA corpus CASCADE")


def config(run_dir, raw, target, *, id_col="id", text_col="contents", k=K, out_dir=None, table_mode="error",
           score_table=None, report=True) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(raw),), text_col=text_col, id_col=id_col),
        targets=(DatasetConfig(paths=(str(target),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        score=ScoreConfig(table=score_table),
        resample=ResampleConfig(num_to_sample=k, out_dir=out_dir, table_mode=table_mode),
        report=ReportConfig(enabled=report, label_col="metadata.pile_set_name" if report else None),
    )


def selected_ids(spark, run_dir) -> list:
    return sorted(r.id for r in spark.read.parquet(f"{run_dir}/selection/ids").select("id").collect())


def test_a_table_and_a_folder_give_the_same_selection_and_report(spark, tmp_path, corpus):
    folder = run_pipeline(spark, config(tmp_path / "folder", PILE, TARGET_C))
    table = run_pipeline(spark, config(tmp_path / "table", "table:corpus.pile", "table:spark_catalog.corpus.target_c",
                                       out_dir="table:corpus.selected"))
    assert selected_ids(spark, tmp_path / "table") == selected_ids(spark, tmp_path / "folder")
    assert len(selected_ids(spark, tmp_path / "table")) == K

    output = spark.table("corpus.selected")
    assert output.count() == K
    assert sorted(output.columns) == ["contents", "dsir_log_weight", "dsir_target", "id", "metadata"]
    from_folder = spark.read.parquet(str(tmp_path / "folder" / "output")).select(*output.columns)
    assert_df_equality(output, from_folder, ignore_row_order=True, ignore_nullable=True)

    reports = [run["report"]["report"] for run in (folder, table)]
    assert reports[0]["labels"]["shares"] == reports[1]["labels"]["shares"]
    assert reports[0]["kl_reduction"] == reports[1]["kl_reduction"]


def test_generated_ids_of_a_table_with_a_nested_text_column(spark, tmp_path, corpus):
    # A one-part name: a table of the current schema.
    spark.read.json(str(PILE)).selectExpr("named_struct('body', contents) AS doc", "metadata") \
        .write.mode("overwrite").saveAsTable("nested_pile")
    runs = [config(tmp_path / f"run{i}", "table:nested_pile", TARGET_C, id_col=None, text_col="doc.body",
                   report=False) for i in range(2)]
    for run in runs:
        run_pipeline(spark, run)
    first, second = (selected_ids(spark, run.run_dir) for run in runs)
    assert first == second and len(set(first)) == K
    output = spark.read.parquet(f"{runs[0].run_dir}/output")
    assert sorted(output.columns) == ["doc", "dsir_id", "dsir_log_weight", "dsir_target", "metadata"]
    assert sorted(r.dsir_id for r in output.select("dsir_id").collect()) == first
    spark.sql("DROP TABLE nested_pile")


def test_an_output_table_is_never_replaced_by_accident(spark, tmp_path, corpus):
    run = config(tmp_path / "run", "table:corpus.pile", TARGET_C, out_dir="table:corpus.twice", report=False)
    run_pipeline(spark, run)
    assert spark.table("corpus.twice").count() == K
    count_record = read_record(spark, str(tmp_path / "run" / "counts"))

    with pytest.raises(InputError, match=r"resample.out_dir: table corpus.twice already exists; .* table_mode: "
                                         r"overwrite"):
        run_pipeline(spark, run, force=True)
    # Refused before any heavy work: the count stage did not run again.
    assert read_record(spark, str(tmp_path / "run" / "counts"))["finished_at"] == count_record["finished_at"]
    assert run_pipeline(spark, run)["resample"]["skipped"]  # the same settings: nothing to write

    replace = config(tmp_path / "run", "table:corpus.pile", TARGET_C, k=25, out_dir="table:corpus.twice",
                     table_mode="overwrite", report=False)
    run_pipeline(spark, replace)
    replaced = spark.table("corpus.twice")
    assert replaced.count() == 25
    expected = spark.read.parquet(str(tmp_path / "run" / "selection" / "ids")).select("id")
    assert_df_equality(replaced.select("id"), expected, ignore_row_order=True, ignore_nullable=True)


def test_scores_as_a_table(spark, tmp_path, corpus):
    record = run_pipeline(spark, config(tmp_path / "run", PILE, TARGET_C, score_table="corpus.scores",
                                        report=False), stages=("count", "fit", "score"))
    assert record["score"]["table"] == "corpus.scores"
    assert_df_equality(spark.table("corpus.scores"), spark.read.parquet(str(tmp_path / "run" / "scores")),
                       ignore_row_order=True, ignore_nullable=True)


def test_an_output_or_scores_table_dropped_is_written_again(spark, tmp_path, corpus):
    run = config(tmp_path / "run", PILE, TARGET_C, out_dir="table:corpus.kept", score_table="corpus.kept_scores",
                 table_mode="overwrite", report=False)  # overwrite: selected again after its scores
    run_pipeline(spark, run)
    selected = sorted(r.id for r in spark.table("corpus.kept").collect())
    assert all(record["skipped"] for record in run_pipeline(spark, run).values())
    spark.sql("DROP TABLE corpus.kept")
    again = run_pipeline(spark, run)
    assert [again[s]["skipped"] for s in ("count", "fit", "score", "resample")] == [True, True, True, False]
    assert sorted(r.id for r in spark.table("corpus.kept").collect()) == selected
    spark.sql("DROP TABLE corpus.kept_scores")
    again = run_pipeline(spark, run)
    assert [again[s]["skipped"] for s in ("count", "fit", "score", "resample")] == [True, True, False, False]
    assert spark.table("corpus.kept_scores").count() == 1000
    assert sorted(r.id for r in spark.table("corpus.kept").collect()) == selected


@pytest.mark.parametrize("raw,out_dir,message", [
    ("table:no_such_schema.pile", None, "dataset raw: table table:no_such_schema.pile not found in the catalog; "
                                        "check its catalog, schema and table name"),
    ("table:corpus.no_such_table", None, "dataset raw: table table:corpus.no_such_table not found in the catalog"),
    (PILE, "table:no_such_schema.selected", "resample.out_dir: the schema no_such_schema of table "
                                            "no_such_schema.selected does not exist"),
    (PILE, "table:no_such_catalog.corpus.selected", "resample.out_dir: "),
])
def test_missing_catalogs_schemas_and_tables_fail_before_any_work(spark, tmp_path, corpus, raw, out_dir, message):
    with pytest.raises(InputError, match=message) as error:
        run_pipeline(spark, config(tmp_path / "run", raw, TARGET_C, out_dir=out_dir))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "counts").exists()


@pytest.mark.parametrize("name", ["a.b.c.d", "x y", "corpus.", "a-b", ""])
def test_names_that_are_not_valid_are_config_errors(name):
    with pytest.raises(ConfigError, match="is not a valid table name"):
        ResampleConfig(out_dir=f"table:{name}")
    with pytest.raises(ConfigError, match="is not a valid table name"):
        ScoreConfig(table=name)


def test_the_command_line_names_a_table_that_exists(spark, tmp_path, corpus, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        f"raw: {{paths: ['table:corpus.pile'], text_col: contents, id_col: id}}\n"
        f"targets: [{{paths: ['{TARGET_C}'], text_col: contents}}]\n"
        "resample: {num_to_sample: 5, out_dir: 'table:corpus.target_c'}\n"  # (the input table is refused apart)
    )
    assert main(["run", "--config", str(config_file)]) == 3  # an input error
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dsir-spark: resample.out_dir: table corpus.target_c already exists")
