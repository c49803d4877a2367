"""A declared JSON schema (json_schema): no inference pass, the same documents and ids as inferred, and
clear errors for a schema Spark cannot read or values it does not hold."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.config import ConfigError, DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.storage.io import InputError, json_schemas

ROWS = [{"id": r["id"], "contents": r["contents"], "meta": {"source": r["metadata"]["pile_set_name"], "n": i}}
        for i, r in enumerate(read_jsonl(PILE)[:200])]
# The columns in another order than Spark's inference gives them (it sorts them by name), nested too.
DECLARED = "meta STRUCT<source STRING, n BIGINT>, id BIGINT, contents STRING"


def config(run_dir, raw, json_schema=None, id_col=None, on_bad_records="fail") -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(raw),), text_col="contents", id_col=id_col, json_schema=json_schema,
                          on_bad_records=on_bad_records),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=20, min_example_length=0, output_format="parquet"),
        report=ReportConfig(enabled=True, label_col="meta.source"),
    )


def jobs_run(spark, group: str, action) -> list[int]:
    """The Spark jobs ``action`` starts, in a job group of its own."""
    spark.sparkContext.setJobGroup(group, "json_schemas")
    try:
        action()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_a_declared_schema_is_read_without_an_inference_pass(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    inferred = config(tmp_path / "a", raw).raw
    declared = config(tmp_path / "b", raw, DECLARED).raw
    assert jobs_run(spark, "inferred", lambda: json_schemas(spark, inferred)) != []  # inference reads the files
    assert jobs_run(spark, "declared", lambda: json_schemas(spark, declared)) == []
    # in the order inference gives, so the same columns read the same whichever order they were declared in
    assert json_schemas(spark, declared) == json_schemas(spark, inferred)


def test_a_declared_schema_selects_the_documents_and_ids_an_inferred_one_does(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    outputs = []
    for name, schema in (("inferred", None), ("declared", DECLARED)):
        records = run_pipeline(spark, config(tmp_path / name, raw, schema))
        assert records["resample"]["rows_out"] == 20
        outputs.append(pd.read_parquet(tmp_path / name / "output").sort_values("dsir_id").reset_index(drop=True))
    inferred, declared = outputs
    # generated ids hash every column of the row: equal ids mean the rows were read the same
    assert list(declared.columns) == list(inferred.columns) == ["contents", "id", "meta", "dsir_id",
                                                                  "dsir_log_weight", "dsir_target"]
    assert declared["dsir_id"].tolist() == inferred["dsir_id"].tolist()
    assert declared["id"].tolist() == inferred["id"].tolist()
    report = [json.loads((tmp_path / name / "report" / "report.json").read_text()) for name in ("inferred", "declared")]
    # the random baseline draws by id: the same draw
    assert report[0]["kl_reduction"] == report[1]["kl_reduction"]


def test_columns_left_out_of_a_declared_schema_are_not_read_nor_written(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    run_pipeline(spark, config(tmp_path / "run", raw, "id BIGINT, contents STRING, meta STRUCT<source STRING>",
                               id_col="id"))
    output = pd.read_parquet(tmp_path / "run" / "output")
    assert len(output) == 20
    assert sorted(output.columns) == ["contents", "dsir_log_weight", "dsir_target", "id", "meta"]
    assert all(set(meta) == {"source"} for meta in output["meta"])


def test_a_value_the_declared_type_cannot_hold_is_a_bad_line_that_names_json_schema(spark, tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[7]["id"] = "not-a-number"
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    with pytest.raises(InputError) as error:
        run_pipeline(spark, config(tmp_path / "fail", raw, DECLARED, id_col="id"))
    message = str(error.value)
    assert message.startswith("dataset raw: 1 lines are not documents (1 malformed JSON); the first is in ")
    assert "or fix json_schema (a value its type cannot hold, e.g. a string for a BIGINT, is malformed)" in message
    records = run_pipeline(spark, config(tmp_path / "skip", raw, DECLARED, id_col="id", on_bad_records="skip"))
    assert records["count"]["bad_records"]["raw"] == {"malformed JSON": 1}
    assert 7 not in set(pd.read_parquet(tmp_path / "skip" / "output")["id"])


@pytest.mark.parametrize("schema, says", [
    ("id BIGINT contents STRING", "is not a schema Spark reads ([PARSE_SYNTAX_ERROR]"),
    ("string", "is a single type, not columns; name each column with its type"),
])
def test_a_schema_spark_cannot_read_is_named(spark, tmp_path, schema, says):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    with pytest.raises(InputError) as error:
        run_pipeline(spark, config(tmp_path / "run", raw, schema))
    assert str(error.value).startswith(f"dataset raw: json_schema {schema!r} ") and says in str(error.value)


def test_an_empty_json_schema_is_a_config_error():
    with pytest.raises(ConfigError, match="json_schema=' '; give the JSON files' columns in Spark's DDL"):
        DatasetConfig(paths=("x.jsonl",), name="raw", json_schema=" ")


def test_a_column_a_setting_names_but_json_schema_leaves_out_is_told_as_such(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    with pytest.raises(InputError, match=re.escape(
            "dataset raw: id column 'id' not found; columns are ['contents'] (the JSON files' columns are those "
            "json_schema declares); add it to json_schema, or set id_col")):
        run_pipeline(spark, config(tmp_path / "run", raw, "contents STRING", id_col="id"))
