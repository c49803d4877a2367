"""The Databricks notebook, executed cell by cell against the local session on the bundled sample."""

from __future__ import annotations

from pathlib import Path

from conftest import PILE, TARGET_C

from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline

NOTEBOOK = Path(__file__).parent.parent / "examples" / "databricks" / "dsir_notebook.py"


class Widgets:
    """dbutils.widgets: text() declares a widget with its default, get() returns what the test set."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.declared = values, {}

    def text(self, name: str, default: str, label: str) -> None:
        self.declared[name] = default

    def get(self, name: str) -> str:
        return self.values.get(name, self.declared[name])


class DbUtils:
    def __init__(self, values: dict[str, str]) -> None:
        self.widgets = Widgets(values)


def cells(path: Path) -> list[str]:
    """Python cells of a notebook in Databricks' source format, without its # MAGIC (Markdown) lines."""
    text = path.read_text(encoding="utf-8").removeprefix("# Databricks notebook source\n")
    return ["\n".join(line for line in cell.splitlines() if not line.startswith("# MAGIC"))
            for cell in text.split("# COMMAND ----------")]


def test_the_databricks_notebook_selects_from_the_sample(spark, tmp_path):
    spark.sql("CREATE SCHEMA IF NOT EXISTS notebook")
    values = {"raw": str(PILE), "target": str(TARGET_C), "run_dir": str(tmp_path / "run"),
              "selected": "notebook.selected", "num_to_sample": "30", "text_col": "contents"}
    shown = []
    namespace = {"spark": spark, "dbutils": DbUtils(values), "display": shown.append}
    for cell in cells(NOTEBOOK):
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - the notebook under test

    assert set(namespace["dbutils"].widgets.declared) == set(values)
    selected = spark.table("notebook.selected")
    assert selected.count() == 30
    assert len(shown) == 2 and shown[0].count() == 20
    top = [r.dsir_log_weight for r in shown[0].collect()]
    assert top == sorted(top, reverse=True)

    # The same selection as the pipeline makes with the same settings (generated ids, seed 0).
    config = RunConfig(
        run_dir=str(tmp_path / "pipeline"),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="auto"),
        resample=ResampleConfig(num_to_sample=30, seed=0),
        report=ReportConfig(enabled=False),
    )
    run_pipeline(spark, config)
    expected = sorted(r.id for r in spark.read.parquet(f"{config.run_dir}/selection/ids").collect())
    assert sorted(r.dsir_id for r in selected.select("dsir_id").collect()) == expected
    spark.sql("DROP SCHEMA notebook CASCADE")
