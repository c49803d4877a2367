"""Bad inputs and failures, each told in one line that names the file, column or setting, with the exit
code of its kind (1 run, 2 config, 3 input) and no stack trace; found before heavy work where it can be."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from cluster import REPO, spark_env
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.cli import main
from dsir_spark.run.directory import RECORD
from dsir_spark.storage.records import read_json

ROWS = [{"id": r["id"], "contents": r["contents"]} for r in read_jsonl(PILE)[:150]]


def config_dict(run_dir, raw, **resample) -> dict:
    return {"run_dir": str(run_dir),
            "raw": {"paths": [str(raw)], "text_col": "contents", "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"num_tokens_to_fit": "all"},
            "resample": {"num_to_sample": 20, **resample},
            "report": {"enabled": False}}


def run_cli(tmp_path, capsys, config: dict, *args: str, command: str = "run") -> tuple[int, str]:
    """The command line in this process: its exit code and its last stderr line, checked to be the only
    dsir-spark line and free of stack traces."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main([command, "--config", str(path), *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\tat " not in err and "Py4J" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dsir-spark:")]
    assert len(lines) <= 1, err
    return code, lines[0] if lines else ""


def nothing_counted(run_dir) -> bool:
    """No count stage recorded done (it never started, or failed)."""
    return (read_json(None, f"{run_dir}/counts/{RECORD}") or {}).get("status") != "done"


def test_a_json_array_file_is_named_as_one(spark, tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps(ROWS, indent=2))
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert code == 3
    assert line == (f"dsir-spark: dataset raw: file:{raw} is a JSON array, not JSON Lines (one JSON object per "
                     "line); convert it, e.g. jq -c '.[]' array.json > documents.jsonl")


def test_a_csv_file_named_jsonl_is_not_json_lines(spark, tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("\n\nid,contents\n" + "".join(f"{r['id']},\"{r['contents'][:20]!r}\"\n" for r in ROWS))
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert code == 3
    assert line.startswith(f"dsir-spark: dataset raw: file:{raw} is not JSON Lines: line 3 is not a JSON object "
                           "('id,contents')")


@pytest.mark.parametrize("compact", ["never", "always"])  # always: found while the snapshot is made
def test_a_corrupt_parquet_file_in_a_folder_is_named(spark, tmp_path, capsys, compact):
    folder = tmp_path / "raw"
    folder.mkdir()
    pd.DataFrame(ROWS).to_parquet(folder / "a.parquet")
    whole = (folder / "a.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(whole[: len(whole) // 2])  # cut short: no footer
    config = config_dict(tmp_path / "run", folder)
    config["raw"]["compact"] = compact
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3
    assert line.startswith(f"dsir-spark: dataset raw: cannot read file://{folder}/b.parquet (")
    assert "is not a Parquet file" in line and line.endswith("fix it or move it out")
    assert nothing_counted(tmp_path / "run")


@pytest.mark.parametrize("content, reason", [
    (lambda data: data, "not a gzip file"),  # named .gz, not compressed
    (lambda data: gzip.compress(data)[:3000], "Unexpected end of input stream"),  # cut short
])
def test_a_bad_gzip_file_is_named_with_the_reason(spark, tmp_path, capsys, content, reason):
    folder = tmp_path / "raw"
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    folder.mkdir()
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (folder / "b.jsonl.gz").write_bytes(content(data))
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", folder))
    assert code == 3
    assert line.startswith(f"dsir-spark: dataset raw: cannot read file://{folder}/b.jsonl.gz ({reason})"), line


def test_a_path_whose_scheme_has_no_file_system_is_named_with_what_to_add(spark, tmp_path, capsys):
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", "s3://bucket/raw.jsonl"))
    assert code == 3
    assert line == ("dsir-spark: dataset raw: s3://bucket/raw.jsonl: this Spark has no file system for s3:// "
                    "paths; use s3a:// paths with hadoop-aws on the classpath (e.g. --packages "
                    "org.apache.hadoop:hadoop-aws:<Spark's Hadoop version>)")
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    code, line = run_cli(tmp_path, capsys, config_dict("gs://bucket/run", raw))
    assert code == 1
    assert line.startswith("dsir-spark: run_dir gs://bucket/run: this Spark has no file system for gs:// paths; "
                           "add the Google Cloud Storage connector")


def test_a_lone_surrogate_is_counted_as_text_that_is_not_unicode(spark, tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    lines = [json.dumps(r) for r in ROWS]
    lines[5] = '{"id": 5000, "contents": "half a pair \\ud800 here"}'
    lines[9] = '{"id": 5001, "contents": "a whole pair \\ud83d\\ude00 is fine"}'
    lines[12] = '{"id": 5002, "contents": "cut'
    raw.write_text("\n".join(lines) + "\n")
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert code == 3
    assert line.startswith("dsir-spark: dataset raw: 2 lines are not documents (1 malformed JSON, 1 text is not "
                           "valid Unicode)"), line
    code, _ = run_cli(tmp_path, capsys, {**config_dict(tmp_path / "run", raw),
                                         "raw": {"paths": [str(raw)], "text_col": "contents", "id_col": "id",
                                                 "on_bad_records": "skip"}})
    assert code == 0
    record = read_json(None, f"{tmp_path}/run/counts/{RECORD}")
    assert record["bad_records"]["raw"] == {"malformed JSON": 1, "text is not valid Unicode": 1}
    assert record["raw"]["documents"] == len(ROWS) - 2


@pytest.mark.parametrize("ident, shown", [({"a": 1}, "struct<a:bigint>"), (1.5, "double")])
def test_an_id_column_that_cannot_hold_ids_is_refused_before_counting(spark, tmp_path, capsys, ident, shown):
    rows = [{**r, "key": ident} for r in ROWS]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    config = config_dict(tmp_path / "run", raw)
    config["raw"]["id_col"] = "key"
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3
    assert line == (f"dsir-spark: dataset raw: id column 'key' has type {shown}, which cannot be an id; ids must "
                    "be strings or integers: point id_col at such a column, or leave id_col unset to have ids "
                    "derived from the rows")
    assert nothing_counted(tmp_path / "run")


def test_identical_rows_without_an_id_col_are_refused_by_the_count_stage(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS + ROWS[10:13])
    config = config_dict(tmp_path / "run", raw)
    del config["raw"]["id_col"]
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3
    assert line.startswith(f"dsir-spark: raw dataset ({raw}), generated ids: 3 document ids occur more than once, "
                           "e.g. '"), line
    assert nothing_counted(tmp_path / "run")


def external_scores(tmp_path, ids, weights) -> str:
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"id": ids, "num_tokens": [500] * len(ids), "log_weight": pa.array(weights)}), path)
    return str(path)


def test_scores_from_elsewhere_with_ids_of_another_type_are_refused_before_counting(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    scores = external_scores(tmp_path, [str(r["id"]) for r in ROWS], [0.0] * len(ROWS))
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw, scores=scores))
    assert code == 3
    assert line.startswith(f"dsir-spark: resample.scores {scores}: column 'id' is string but the raw dataset's ids "
                           "(id_col 'id') are bigint; the scores must carry the raw dataset's ids"), line
    assert nothing_counted(tmp_path / "run")


def test_scores_from_elsewhere_with_a_nan_weight_are_refused_before_counting(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    weights = [0.0] * len(ROWS)
    weights[4] = float("nan")
    scores = external_scores(tmp_path, [r["id"] for r in ROWS], weights)
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw, scores=scores))
    assert code == 3
    assert line.startswith("dsir-spark: weight column 'log_weight': 1 of 150 values are not finite numbers (1 NaN)")
    assert nothing_counted(tmp_path / "run")


def test_scores_whose_ids_are_not_raw_ids_are_told_so_and_leave_no_success_marker(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    code, _ = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert code == 0 and (tmp_path / "run" / "output" / "_SUCCESS").exists()
    assert not list((tmp_path / "run" / "selection").rglob("_SUCCESS"))  # stage folders never get one
    scores = external_scores(tmp_path, [10_000 + i for i in range(150)], [0.0] * 150)
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw, scores=scores))
    assert code == 3
    assert line == (f"dsir-spark: found 0 of the 20 selected documents in the raw data, so nothing was written to "
                    f"{tmp_path}/run/output: 20 selected ids are not ids of the raw dataset and 0 more rows share a "
                    "selected id; the scores must use the raw dataset's id_col (the same ids, of the same type)")
    assert not list((tmp_path / "run" / "selection").rglob("_SUCCESS"))  # the failed stage's folders
    assert not (tmp_path / "run" / "output" / "_SUCCESS").exists()  # the earlier output is gone


def test_a_model_that_cannot_tell_documents_apart_is_warned_about(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = {**config_dict(tmp_path / "run", raw), "features": {"num_buckets": 1},
              "report": {"enabled": True}}
    code, _ = run_cli(tmp_path, capsys, config)
    assert code == 0
    warning = ("target target_0: the log ratio is 0 in every bucket, so every document gets the same weight and "
               "the selection is uniformly random; check num_buckets and that the target differs from raw")
    assert read_json(None, f"{tmp_path}/run/model/{RECORD}")["warnings"] == [warning]
    assert json.loads((tmp_path / "run" / "report" / "report.json").read_text())["warnings"] == [warning]
    assert f"**Warning:** {warning}" in (tmp_path / "run" / "report" / "report.md").read_text()


def test_no_number_to_select_is_a_config_error_before_any_work(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw)
    del config["resample"]["num_to_sample"]
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 2
    assert line == ("dsir-spark: config error: resample.num_to_sample is not set; set how many documents to select, "
                    "e.g. --set resample.num_to_sample=1000 (0 writes an empty selection), or a token budget with "
                    "resample.num_tokens_to_sample")
    assert not (tmp_path / "run" / "counts").exists()
    code, _ = run_cli(tmp_path, capsys, config, command="fit")  # the stages before resample do not need it
    assert code == 1  # fit needs the count stage first, and says so


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_trace(spark, tmp_path, capsys, monkeypatch):
    from dsir_spark import pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero in a stage")

    monkeypatch.setitem(pipeline.RUNNERS, "count", broken)
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert code == 1
    assert line == ("dsir-spark: run failed: division by zero in a stage (rerun with --debug for the full trace)")
    path = tmp_path / "run.yaml"
    assert main(["run", "--config", str(path), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_a_corrupt_file_prints_no_java_stack_trace_on_the_terminal(tmp_path):
    """The whole command in its own process: the JVM's stderr is the terminal's."""
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.jsonl.gz").write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in ROWS))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_dict(tmp_path / "run", folder)))
    result = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=600, env=spark_env(), cwd=REPO)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "\tat " not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"dsir-spark: dataset raw: cannot read file://{folder}/a.jsonl.gz (not a gzip file)")


@pytest.mark.parametrize("text", [
    'An error occurred while calling o595.parquet.\nCaused by: java.lang.NullPointerException: Cannot invoke '
    '"org.apache.spark.scheduler.DAGScheduler.runJob()" because the return value of '
    '"org.apache.spark.SparkContext.dagScheduler()" is null',
    "java.lang.IllegalStateException: Cannot call methods on a stopped SparkContext.",
])
def test_a_sparkcontext_stopped_under_the_run_is_told_with_the_memory_advice(text):
    """An OutOfMemoryError in a task can stop the SparkContext; the next call then fails on a null scheduler
    (seen in the slow out-of-memory test): said as the JVM stopping, with the memory advice."""
    from dsir_spark.storage.failures import one_line

    line = one_line(RuntimeError(text))
    assert line.startswith("Spark's JVM or its SparkContext stopped while the run worked. If its last lines above "
                           "say OutOfMemoryError") and "spark.driver.memory" in line
