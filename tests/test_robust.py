"""Real-world input: malformed and over-long lines, stray files, changed data, failed resamples."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import StageOrderError, read_record
from dsir_spark.run.status import run_status
from dsir_spark.selection.resampling import ResampleError
from dsir_spark.storage.io import InputError

ROWS = [{"id": r["id"], "contents": r["contents"], "source": r["metadata"]["pile_set_name"]}
        for r in read_jsonl(PILE)[:150]]


def config(run_dir, raw_paths, *, k=20, min_length=100, on_bad_records="fail", max_string=None, fmt="auto",
           report=False) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=tuple(str(p) for p in raw_paths), text_col="contents", id_col="id", format=fmt,
                          on_bad_records=on_bad_records, json_max_string_length=max_string),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=k, min_example_length=min_length),
        report=ReportConfig(enabled=report, label_col="source" if report else None),
    )


def with_broken_lines(path, rows, broken: dict[int, str]):
    """JSON Lines with some lines replaced by text that is not JSON."""
    lines = [json.dumps(r) for r in rows]
    for index, text in broken.items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_lines_fail_in_one_line_naming_the_file(spark, tmp_path):
    raw = with_broken_lines(tmp_path / "raw.jsonl", ROWS, {3: '{"id": 9001, "contents": "cut', 40: "not json",
                                                          41: '{"id": }'})
    with pytest.raises(InputError) as error:
        run_pipeline(spark, config(tmp_path / "run", [raw]))
    message = str(error.value)
    assert message.startswith("dataset raw: 3 lines are not documents (3 malformed JSON); the first is in ")
    assert f"{raw}" in message and "on_bad_records: skip" in message and "\n" not in message
    assert read_record(spark, str(tmp_path / "run" / "counts")) is None


def test_skipped_malformed_lines_are_counted_and_never_selected(spark, tmp_path):
    raw = with_broken_lines(tmp_path / "raw.jsonl", ROWS, {3: '{"id": 9001, "contents": "cut', 40: "not json",
                                                          41: '{"id": }'})
    good = len(ROWS) - 3
    # Every document is eligible and all of them are selected: a broken line would have to be among them.
    records = run_pipeline(spark, config(tmp_path / "run", [raw], k=good, min_length=0, on_bad_records="skip",
                                         report=True))
    assert records["count"]["bad_records"]["raw"] == {"malformed JSON": 3}
    assert records["count"]["raw"]["documents"] == good
    counts_json = json.loads(next((tmp_path / "run" / "counts" / "raw.json").glob("part-*")).read_text())
    assert counts_json["bad_records"] == {"malformed JSON": 3}
    assert records["report"]["report"]["bad_records"]["raw"] == {"malformed JSON": 3}
    assert "3 malformed JSON" in (tmp_path / "run" / "report" / "report.md").read_text()
    output = spark.read.parquet(str(tmp_path / "run" / "output"))
    assert output.count() == good and "_corrupt_record" not in output.columns
    assert sorted(r.id for r in output.select("id").collect()) == sorted(
        r["id"] for i, r in enumerate(ROWS) if i not in (3, 40, 41))


def test_a_document_too_long_for_the_reader_is_a_bad_record_with_its_own_reason(spark, tmp_path):
    long_doc = {"id": 7777, "contents": "word " * 4_200_000}  # 21,000,000 characters in one string
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS[:60] + [long_doc])
    with pytest.raises(InputError, match=r"1 lines are not documents \(1 too long for the JSON reader\).*raise the "
                                         r"dataset's json_max_string_length"):
        run_pipeline(spark, config(tmp_path / "run", [raw]))
    records = run_pipeline(spark, config(tmp_path / "bigger", [raw], max_string=30_000_000),
                           stages=("count",))
    assert records["count"]["raw"]["documents"] == 61 and records["count"]["bad_records"]["raw"] == {}


def test_a_file_without_the_text_column_is_named(spark, tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", ROWS[:50])
    other = write_jsonl(tmp_path / "b.jsonl", [{"id": 5000 + i, "body": "x"} for i in range(30)])
    with pytest.raises(InputError, match=rf"dataset raw: {other} has no text column 'contents'"):
        run_pipeline(spark, config(tmp_path / "run", [good, other]))


def test_a_folder_of_json_lines_and_a_parquet_folder_with_a_stray_file(spark, tmp_path):
    folder = tmp_path / "jsonl"
    write_jsonl(folder / "part-1.jsonl", ROWS[:70])
    write_jsonl(folder / "part-2.jsonl", ROWS[70:])
    (folder / "_SUCCESS").write_text("")  # Spark's own marker files are not data
    records = run_pipeline(spark, config(tmp_path / "run", [folder]))
    assert records["count"]["raw"]["documents"] == len(ROWS)

    parquet = tmp_path / "parquet"
    spark.read.json(str(folder)).write.parquet(str(parquet))
    (parquet / "README.txt").write_text("how this data was made")
    with pytest.raises(InputError) as error:
        run_pipeline(spark, config(tmp_path / "run2", [parquet]))
    assert str(error.value).startswith(f"dataset raw: {parquet} holds README.txt (")
    assert "move it out, or point paths at the data files" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match="holds README.txt"):
        run_pipeline(spark, config(tmp_path / "run3", [parquet], fmt="parquet"))


def test_data_changed_after_scoring_is_noticed(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS[:100])
    run_pipeline(spark, config(tmp_path / "run", [raw]), stages=("count", "fit", "score"))
    time.sleep(1.1)  # a later modification time even on file systems with one-second resolution
    write_jsonl(tmp_path / "raw.jsonl", ROWS[:100] + ROWS[100:120])
    with pytest.raises(StageOrderError, match="the input files changed since the score stage ran"):
        run_pipeline(spark, config(tmp_path / "run", [raw]), stages=("resample",))
    records = run_pipeline(spark, config(tmp_path / "run", [raw]))
    assert not records["count"]["skipped"] and records["count"]["raw"]["documents"] == 120


def test_a_failed_resample_leaves_nothing_that_looks_complete(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    run_pipeline(spark, config(tmp_path / "run", [raw], report=True))
    output, report = tmp_path / "run" / "output", tmp_path / "run" / "report"
    assert (output / "_SUCCESS").exists() and (report / "report.json").exists()

    # The resample stage alone (a whole run would refuse k before fit, leaving the earlier output as it was).
    with pytest.raises(ResampleError, match="only"):
        run_pipeline(spark, config(tmp_path / "run", [raw], k=10_000, report=True), stages=("resample", "report"))
    assert not (output / "_SUCCESS").exists()
    assert spark.read.parquet(str(output)).count() == 0
    assert read_record(spark, str(tmp_path / "run" / "selection")) is None
    assert read_record(spark, str(report)) is None
    assert not [name for name in os.listdir(report) if name.startswith("report.")]


def test_a_selection_of_none_makes_the_old_report_stale(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    run_pipeline(spark, config(tmp_path / "run", [raw], report=True))
    records = run_pipeline(spark, config(tmp_path / "run", [raw], k=0, report=True))
    assert records["resample"]["rows_out"] == 0 and records["report"]["skipped"]
    assert read_record(spark, str(tmp_path / "run" / "report")) is None
    assert not (tmp_path / "run" / "report" / "report.md").exists()
    # status agrees with run: nothing is left to do, the report is not stale but has nothing to say
    status = run_status(config(tmp_path / "run", [raw], k=0, report=True))
    assert status["complete"] and status["would_redo"] == []
    assert [(s["stage"], s["state"]) for s in status["stages"]][-2:] == [("resample", "done"), ("report", "empty")]
    status = run_status(config(tmp_path / "run", [raw], k=5, report=True))  # a selection to make again: and report
    assert [item["stage"] for item in status["would_redo"]] == ["resample", "report"]


def test_text_that_is_not_a_string_in_one_file_of_a_folder_is_named(spark, tmp_path):
    folder = tmp_path / "raw"
    write_jsonl(folder / "a.jsonl", ROWS[:60])
    numbers = write_jsonl(folder / "b.jsonl", [{"id": 8000 + i, "contents": i, "source": "x"} for i in range(20)])
    with pytest.raises(InputError, match=r"20 lines are not documents \(20 text is not a string\); the first is in "
                                         rf"\S*{numbers}.*every record's text must be a JSON string"):
        run_pipeline(spark, config(tmp_path / "run", [folder]))
    # Skipped, they are counted, and the numbers never become documents.
    records = run_pipeline(spark, config(tmp_path / "run", [folder], on_bad_records="skip", k=10))
    assert records["count"]["bad_records"]["raw"] == {"text is not a string": 20}
    assert records["count"]["raw"]["documents"] == 60


def test_a_file_without_the_text_field_inside_a_glob_is_named(spark, tmp_path):
    write_jsonl(tmp_path / "raw" / "a.jsonl", ROWS[:60])
    other = write_jsonl(tmp_path / "raw" / "b.jsonl", [{"id": 9000 + i, "body": "text elsewhere"} for i in range(15)])
    with pytest.raises(InputError, match=rf"15 lines are not documents \(15 no text field\); the first is in "
                                         rf"\S*{other}.*every record needs the text field 'contents'"):
        run_pipeline(spark, config(tmp_path / "run", [tmp_path / "raw" / "*.jsonl"]))


def test_null_texts_in_well_formed_records_stay_empty_documents(spark, tmp_path):
    rows = ROWS[:50] + [{"id": 9100, "contents": None, "source": "x"}]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    records = run_pipeline(spark, config(tmp_path / "run", [raw]), stages=("count",))
    assert records["count"]["raw"]["documents"] == 51 and records["count"]["raw"]["null_texts"] == 1
    assert records["count"]["bad_records"]["raw"] == {}


def parquet_file(path, rows, schema=None):
    import pyarrow as pa
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
    return path


def test_a_parquet_file_without_the_text_column_inside_a_folder_is_named(spark, tmp_path):
    parquet_file(tmp_path / "raw" / "a.parquet", ROWS[:60])
    other = parquet_file(tmp_path / "raw" / "b.parquet", [{"id": 9000 + i, "body": "elsewhere", "source": "x"}
                                                          for i in range(15)])
    with pytest.raises(InputError, match=rf"^dataset raw: \S*{other} has no text column 'contents', which the "
                                         "dataset's other files have; every file needs it"):
        run_pipeline(spark, config(tmp_path / "run", [tmp_path / "raw"]), stages=("count",))
    # The same with a fit sample: the file's rows fall outside it, and are still noticed.
    sampled = config(tmp_path / "run2", [tmp_path / "raw" / "*.parquet"])
    sampled = RunConfig(**{**sampled.__dict__, "fit": FitConfig(num_tokens_to_fit=2000)})
    with pytest.raises(InputError, match=rf"{other} has no text column"):
        run_pipeline(spark, sampled, stages=("count",))


def test_null_texts_in_a_parquet_folder_stay_empty_documents(spark, tmp_path):
    parquet_file(tmp_path / "raw" / "a.parquet", ROWS[:60])
    import pyarrow as pa
    schema = pa.schema([("id", pa.int64()), ("contents", pa.string()), ("source", pa.string())])
    parquet_file(tmp_path / "raw" / "b.parquet", [{"id": 9000 + i, "contents": None, "source": "x"} for i in range(5)],
                 schema)
    records = run_pipeline(spark, config(tmp_path / "run", [tmp_path / "raw"]), stages=("count",))
    assert records["count"]["raw"]["documents"] == 65 and records["count"]["raw"]["null_texts"] == 5


def test_a_parquet_file_whose_text_has_another_type_is_named(spark, tmp_path):
    parquet_file(tmp_path / "raw" / "a.parquet", ROWS[:60])
    other = parquet_file(tmp_path / "raw" / "b.parquet", [{"id": 9000 + i, "contents": i, "source": "x"}
                                                          for i in range(15)])
    with pytest.raises(InputError) as error:
        run_pipeline(spark, config(tmp_path / "run", [tmp_path / "raw"]), stages=("count",))
    message = str(error.value)
    assert message.startswith(f"dataset raw: in file://{other}, column contents is Parquet type INT64 where the "
                              "other files have string; ") and "\n" not in message
