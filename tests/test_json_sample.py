"""``json_schema: sample``: the columns from the first lines of a few files (no pass over all of them),
each line read whole, and the output typed from the selected rows: the same output as Spark's
inference, columns the sample missed included."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.config import (
    ChunkingConfig,
    DatasetConfig,
    FitConfig,
    ReportConfig,
    ResampleConfig,
    RunConfig,
    ShardConfig,
)
from dsir_spark.pipeline import run_pipeline
from dsir_spark.storage.io import InputError, json_schemas, read_dataset
from dsir_spark.storage.json_records import SAMPLE_FILES, SAMPLE_LINES, sampled_files

PILE_ROWS = read_jsonl(PILE)


def rows(count: int, late_from: int) -> list[dict]:
    """``count`` Pile documents with a nested column, a column whose type changes after the first lines,
    and from line ``late_from`` on a column the first lines do not have."""
    out = []
    for i in range(count):
        source = PILE_ROWS[i % len(PILE_ROWS)]
        row = {"id": i, "contents": source["contents"], "meta": {"source": source["metadata"]["pile_set_name"]},
               "score": i if i < late_from else f"s{i}"}
        if i >= late_from:
            row["late"] = {"n": i, "tag": "late"}
        out.append(row)
    return out


def config(run_dir, raw_paths, json_schema, *, id_col="id", k=20, output_format="parquet", report=True,
           label_col="meta.source", compact="auto", **resample) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=tuple(str(p) for p in raw_paths), text_col="contents", id_col=id_col,
                          json_schema=json_schema, compact=compact),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=k, min_example_length=0, output_format=output_format, **resample),
        report=ReportConfig(enabled=report, label_col=label_col if report else None),
    )


def test_the_sample_is_the_first_lines_of_a_few_files(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", rows(SAMPLE_LINES + 200, late_from=SAMPLE_LINES + 100))
    dataset = config(tmp_path / "run", [raw], "sample").raw
    [sampled] = json_schemas(spark, dataset)
    names = [field["name"] for field in json.loads(sampled)["fields"]]
    # the lines after the first SAMPLE_LINES were not read: their column is not there, nor their strings
    assert names == ["contents", "id", "meta", "score"]
    assert {f["name"]: f["type"] for f in json.loads(sampled)["fields"]}["score"] == "long"
    [inferred] = json_schemas(spark, replace(dataset, json_schema=None))
    assert [field["name"] for field in json.loads(inferred)["fields"]] == ["contents", "id", "late", "meta", "score"]
    files = [f"f{i:02}" for i in range(40)]
    chosen = sampled_files(files)
    assert len(chosen) == SAMPLE_FILES and chosen[0] == "f00" and chosen[-1] == "f39"
    assert chosen == sorted(set(chosen))
    assert sampled_files(files[:3]) == files[:3]


@pytest.mark.parametrize("output_format", ["parquet", "json"])
def test_the_output_is_inferences_columns_the_sample_missed_included(spark, tmp_path, output_format):
    data = rows(SAMPLE_LINES + 200, late_from=SAMPLE_LINES + 100)
    raw = write_jsonl(tmp_path / "raw.jsonl", data)
    outputs = {}
    for mode in (None, "sample"):
        name = mode or "inferred"
        # every document selected: the output holds the lines past the sample
        records = run_pipeline(spark, config(tmp_path / name, [raw], mode, k=len(data), report=False,
                                             output_format=output_format))
        assert records["resample"]["rows_out"] == len(data)
        folder = tmp_path / name / "output"
        if output_format == "parquet":
            outputs[name] = pq.read_table(folder)
        else:
            outputs[name] = [json.loads(line) for part in sorted(folder.glob("*.json")) for line in open(part)]
    if output_format == "parquet":
        inferred, sampled = outputs["inferred"], outputs["sample"]
        assert sampled.schema == inferred.schema
        assert "late" in sampled.column_names and str(sampled.schema.field("score").type) == "string"
        key = [("id", "ascending")]
        assert sampled.sort_by(key).to_pylist() == inferred.sort_by(key).to_pylist()
    else:
        by_id = {name: sorted(found, key=lambda r: r["id"]) for name, found in outputs.items()}
        assert by_id["sample"] == by_id["inferred"]
        late = by_id["sample"][-1]
        assert late["late"] == {"n": len(data) - 1, "tag": "late"} and late["score"] == f"s{len(data) - 1}"
    assert not (tmp_path / "sample" / "selection" / "lines").exists()  # staged, read into the output, removed


def test_a_sampled_run_selects_what_an_inferred_one_does_and_its_report_too(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", rows(300, late_from=250))
    records, outputs = {}, {}
    for mode in (None, "sample"):
        name = mode or "inferred"
        records[name] = run_pipeline(spark, config(tmp_path / name, [raw], mode, output_format="json"))
        outputs[name] = sorted(read_jsonl_folder(tmp_path / name / "output"), key=lambda r: r["id"])
    assert len(outputs["sample"]) == 20 and outputs["sample"] == outputs["inferred"]
    reports = {name: json.loads((tmp_path / name / "report" / "report.json").read_text()) for name in records}
    for key in ("kl_reduction", "labels", "ngrams", "examples", "documents", "tokens", "lengths", "log_weights"):
        assert reports["sample"][key] == reports["inferred"][key], key
    assert reports["sample"]["labels"]
    # the report read the staged documents, not raw
    assert records["sample"]["resample"]["report_documents"]["label_col"] == "meta.source"


def read_jsonl_folder(folder) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("*.json")) for line in open(part)]


def test_generated_ids_hash_the_line_as_read_and_do_not_follow_other_files(spark, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"contents": "one two", "n": 1}, {"contents": "three", "n": 2}])
    later = tmp_path / "b.jsonl"

    def ids(mode, other_n) -> list[str]:
        write_jsonl(later, [{"contents": "four", "n": other_n}])
        dataset = DatasetConfig(paths=(str(tmp_path / "*.jsonl"),), name="raw", text_col="contents", json_schema=mode)
        frame = read_dataset(spark, dataset, json_schemas(spark, dataset))
        found = frame.where(frame["__dsir_file"].endswith("a.jsonl")).select("__dsir_id").collect()
        return sorted(r[0] for r in found)

    # another file's 1.5 makes inference read n as a double for every file: a.jsonl's rows change ids
    assert ids(None, 3) != ids(None, 1.5)
    # read whole, a line's id is its own
    assert ids("sample", 3) == ids("sample", 1.5)
    assert len(set(ids("sample", 3))) == 2


def test_chunks_shards_and_their_report_come_out_as_inferred(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", rows(120, late_from=100))
    found = {}
    for mode in (None, "sample"):
        name = mode or "inferred"
        run = replace(config(tmp_path / name, [raw], mode, k=30, output_format="json",
                             shards=ShardConfig(num_files=2, compression="none")),
                      chunking=ChunkingConfig(tokens=200, min_tokens=10))
        run_pipeline(spark, run)
        folder = tmp_path / name / "output"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["totals"]["rows"] == 30
        found[name] = sorted(read_jsonl_files(folder), key=lambda r: (r["id"], r["dsir_chunk"]))
    assert found["sample"] == found["inferred"]
    assert all(len(r["contents"]) < 2_000 for r in found["sample"])  # chunks' text, not their documents'
    # the report, from the staged chunks: the selected ones' text is the chunk's, not the line's
    reports = [json.loads((tmp_path / name / "report" / "report.json").read_text()) for name in ("inferred", "sample")]
    for key in ("kl_reduction", "labels", "ngrams", "examples", "tokens"):
        assert reports[1][key] == reports[0][key], key


def read_jsonl_files(folder) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("*.jsonl")) for line in open(part)]


def test_a_column_the_sample_lacks_is_named(spark, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", rows(SAMPLE_LINES + 20, late_from=SAMPLE_LINES + 10))
    with pytest.raises(InputError, match=re.escape(
            "dataset raw: group column 'late.tag' not found; columns are ['contents', 'id', 'meta', 'score'] (in the "
            f"first 1,000 lines of up to {SAMPLE_FILES} files: json_schema: sample); set resample.group_col")):
        run_pipeline(spark, config(tmp_path / "group", [raw], "sample", group_col="late.tag", max_share=0.5,
                                   report=False))


def test_a_dataset_mixing_json_lines_and_parquet_is_inferred_as_before(spark, tmp_path, caplog):
    raw = write_jsonl(tmp_path / "raw.jsonl", rows(50, late_from=40))
    pd.DataFrame({"id": [10_000], "contents": ["int main(void) { return 0; }"]}).to_parquet(tmp_path / "more.parquet")
    outputs = {}
    caplog.set_level(logging.INFO, logger="dsir_spark")
    for mode in (None, "sample"):
        name = mode or "inferred"
        run_pipeline(spark, config(tmp_path / name, [raw, tmp_path / "more.parquet"], mode, k=51, report=False))
        outputs[name] = pq.read_table(tmp_path / name / "output").sort_by([("id", "ascending")])
    assert outputs["sample"] == outputs["inferred"] and outputs["sample"].num_rows == 51
    assert "json_schema: sample reads datasets of JSON Lines only" in caplog.text
    with pytest.raises(InputError) as error:  # inferred: the message is inference's
        run_pipeline(spark, config(tmp_path / "label", [raw, tmp_path / "more.parquet"], "sample", label_col="meta.x"))
    assert str(error.value) == ("dataset raw: label column 'meta.x' not found; columns are ['contents', 'id', 'late', "
                                "'meta', 'score']; set report.label_col (nested fields as parent.child)")


def test_an_id_of_another_type_than_the_sampled_ones_is_named(spark, tmp_path):
    data = rows(SAMPLE_LINES + 5, late_from=SAMPLE_LINES + 10)
    data[-1]["id"] = "x-1004"
    raw = write_jsonl(tmp_path / "raw.jsonl", data)
    with pytest.raises(InputError, match=re.escape(
            "id_col 'id': 1 documents have a null id; give an id_col without nulls, or leave id_col unset to have "
            "ids derived from the rows; with json_schema: sample an id of another type than the sampled lines' (a "
            "string among integers) reads as null: set json_schema: null")):
        run_pipeline(spark, config(tmp_path / "run", [raw], "sample", report=False))


def test_a_snapshot_of_small_files_keeps_the_lines_whole(spark, tmp_path):
    data = rows(90, late_from=60)
    folder = tmp_path / "raw"
    folder.mkdir()
    for part in range(6):
        write_jsonl(folder / f"part-{part}.jsonl", data[part * 15:(part + 1) * 15])
    outputs = {}
    for mode in (None, "sample"):
        name = mode or "inferred"
        run_pipeline(spark, config(tmp_path / name, [folder], mode, k=90, output_format="json", report=False,
                                   compact="always", id_col=None))
        assert (tmp_path / name / "_dsir" / "compacted" / "raw").exists()
        found = read_jsonl_folder(tmp_path / name / "output")
        # generated ids differ between the two ways of reading (see test_generated_ids_...): compare the rest
        outputs[name] = sorted(({k: v for k, v in r.items() if k != "dsir_id"}
                                for r in found), key=lambda r: r["id"])
    assert len(outputs["sample"]) == 90 and outputs["sample"] == outputs["inferred"]
