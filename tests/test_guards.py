"""What a run must never do to a user's data, and never pass: outputs that overlap inputs, documents
read twice, incomplete shard sets, selections that are not what was asked (issue 30's cases)."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl
from test_failures import config_dict, nothing_counted, run_cli

from dsir_spark.config import ConfigError, config_from_dict

ROWS = [{"id": r["id"], "contents": r["contents"]} for r in read_jsonl(PILE)[:150]]


def digest(folder) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes: compared before and after a refused run."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@pytest.fixture
def raw_folder(tmp_path):
    folder = tmp_path / "raw"
    write_jsonl(folder / "a.jsonl", ROWS[:75])
    write_jsonl(folder / "b.jsonl", ROWS[75:])
    return folder


# ---------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("where", ["raw", "raw/", "raw/sub", "run/../raw", "file:raw", "link", "target", "parent"])
def test_an_out_dir_over_an_input_is_refused_before_spark_and_the_input_is_untouched(tmp_path, capsys, raw_folder,
                                                                                      where):
    target = tmp_path / "target"
    write_jsonl(target / "t.jsonl", read_jsonl(TARGET_C))
    os.symlink(raw_folder, tmp_path / "link")
    out_dir = {"file:raw": f"file:{raw_folder}", "parent": str(tmp_path)}.get(where, str(tmp_path / where))
    config = config_dict(tmp_path / "run", raw_folder, out_dir=out_dir)
    config["targets"][0]["paths"] = [str(target)]
    before = digest(tmp_path)
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 2
    assert line.startswith(f"dsir-spark: config error: {tmp_path}/run.yaml: resample.out_dir: {out_dir} ")
    assert "empties its output folder" in line or "run_dir" in line
    assert digest(tmp_path) == {**before, "run.yaml": digest(tmp_path)["run.yaml"]}
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out_dir", ["run", "run/scores", "run/sub/output", "."])
def test_an_out_dir_over_the_run_directory_is_refused(tmp_path, out_dir):
    config = config_dict(tmp_path / "run", "/data/raw.jsonl", out_dir=str(tmp_path / out_dir))
    with pytest.raises(ConfigError, match=r"resample.out_dir: .* run_dir .*/run, whose folders the stages write"):
        config_from_dict(config)


def test_the_default_output_place_given_explicitly_is_accepted(tmp_path):
    config = config_dict(tmp_path / "run", tmp_path / "raw.jsonl", out_dir=f"{tmp_path}/run/./output/")
    assert config_from_dict(config).resample.out_dir.endswith("output/")


def test_external_scores_and_input_tables_are_not_outputs(tmp_path):
    config = config_dict(tmp_path / "run", tmp_path / "raw.jsonl", out_dir=str(tmp_path / "scores" / "x"),
                         scores=str(tmp_path / "scores"))
    with pytest.raises(ConfigError, match="lies inside .*scores, resample.scores"):
        config_from_dict(config)
    config = config_dict(tmp_path / "run", "table:main.docs", out_dir="table:MAIN.`docs`")
    with pytest.raises(ConfigError, match="resample.out_dir: table:MAIN.`docs` is table:main.docs, an input of "
                                          "dataset raw"):
        config_from_dict(config)
    config = config_dict(tmp_path / "run", "table:main.docs")
    config["score"] = {"table": "main.docs"}
    with pytest.raises(ConfigError, match="score.table: table:main.docs is table:main.docs"):
        config_from_dict(config)


def test_a_folder_holding_other_files_is_not_emptied_unless_overwrite_says_so(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    kept = tmp_path / "kept"
    (kept / "notes").mkdir(parents=True)
    (kept / "notes" / "todo.txt").write_text("mine")
    (kept / "data.parquet").write_bytes(b"PAR1 not dsir's")
    before = digest(kept)
    config = config_dict(tmp_path / "run", raw, out_dir=str(kept), output_format="json")
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 2
    assert line == (f"dsir-spark: config error: resample.out_dir: {kept} holds 2 entries dsir-spark did not write "
                    "(e.g. data.parquet), and the resample stage empties its output folder; choose an empty or new "
                    "folder, or set resample.overwrite: true to replace what is there")
    assert digest(kept) == before and nothing_counted(tmp_path / "run")

    config["resample"]["overwrite"] = True
    assert run_cli(tmp_path, capsys, config) == (0, "")
    assert len(read_jsonl_folder(kept)) == 20 and not (kept / "notes").exists()
    # Now it is this run's own output: a new selection replaces it without overwrite.
    del config["resample"]["overwrite"]
    config["resample"]["num_to_sample"] = 7
    assert run_cli(tmp_path, capsys, config) == (0, "")
    assert len(read_jsonl_folder(kept)) == 7
    # Another run may not take it over.
    other = {**config, "run_dir": str(tmp_path / "run2")}
    code, line = run_cli(tmp_path, capsys, other)
    assert code == 2 and f"holds the output of another run ({tmp_path / 'run'})" in line


def read_jsonl_folder(folder) -> list[dict]:
    return [row for name in sorted(os.listdir(folder)) if name.endswith(".json")
            for row in read_jsonl(folder / name)]


# ---------------------------------------------------------------------------------------- settings


def load(tmp_path, text: str):
    from dsir_spark.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("run_dir: r\nraw: {paths: [a.jsonl]}\ntargets: [{paths: [b.jsonl]}]\n" + text)
    return load_config(str(path))


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    config = load(tmp_path, "resample: {temperature: 1e-6, num_tokens_to_sample: 3e9}\nfit: {regularization: 1E-3}")
    assert config.resample.temperature == 1e-6 and config.fit.regularization == 1e-3
    assert config.resample.num_tokens_to_sample == 3_000_000_000
    with pytest.raises(ConfigError, match=r"resample.num_to_sample: expected an integer, got '1.5e0'"):
        load(tmp_path, "resample: {num_to_sample: 1.5e0}")


@pytest.mark.parametrize("text,message", [
    ("resample: {temperature: .inf}", "resample.temperature: expected a finite number, got inf"),
    ("fit: {regularization: .nan}", "fit.regularization: expected a finite number, got nan"),
    ("resample: {seed: 9223372036854775808}", "resample.seed=9223372036854775808; a seed must be a 64-bit integer"),
    ("fit: {sample_seed: -9223372036854775809}", "fit.sample_seed=-9223372036854775809; a seed must be a 64-bit"),
    ("fit: {target_proportions: [1.0]}", "fit.target_proportions is set but fit.separate_targets is false"),
    ("resample: {seed: 1}\nreport: {}\nresample: {seed: 2}",
     "c.yaml: line 6: the setting 'resample' is given twice in one section (also at line 4); keep one"),
    ("resample: {seed: 1, top_k: true, seed: 2}", "line 4: the setting 'seed' is given twice in one section"),
])
def test_settings_that_used_to_pass_silently_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, text)


def test_a_missing_sample_size_and_a_bad_top_are_told_before_any_jvm_starts(tmp_path):
    """JAVA_HOME points nowhere: a command that started a JVM would fail on that, not with these lines."""
    import subprocess
    import sys

    import yaml
    from cluster import REPO, spark_env

    config = config_dict(tmp_path / "run", tmp_path / "raw.jsonl")
    del config["resample"]["num_to_sample"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    env = {**spark_env(), "JAVA_HOME": "/nonexistent", "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
    for args, message in [
        (["run"], "dsir-spark: config error: resample.num_to_sample is not set"),
        (["explain", "--id", "x", "--top", "0"], "dsir-spark: config error: explain --top 0: give how many n-grams"),
    ]:
        done = subprocess.run([sys.executable, "-m", "dsir_spark.cli", *args, "--config", str(tmp_path / "c.yaml")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith(message), done.stderr



def test_a_missing_relative_path_is_one_line_that_says_where_it_was_looked_for(tmp_path):
    """Spark logs a Java stack trace when a path is missing (from FileStreamSink, in streaming.sinks since
    Spark 4): kept off the terminal."""
    import subprocess
    import sys

    import yaml
    from cluster import spark_env

    config = config_dict(str(tmp_path / "run"), "data/raw.jsonl")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", "c.yaml"], cwd=tmp_path,
                          env=spark_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines()[-1] == (f"dsir-spark: dataset raw: path data/raw.jsonl does not exist (relative "
                                            f"to {tmp_path}, where the command runs); check the path or glob")
    assert "Exception" not in done.stderr and "\tat " not in done.stderr, done.stderr



@pytest.mark.parametrize("tokens, message", [
    ({"tokenizer": "{missing}"}, "cannot read {missing} (No such file or directory)"),
    ({"tokenizer": "{raw}"}, "tokens.tokenizer: {raw} is not a Hugging Face tokenizer.json"),
])
def test_a_tokenizer_the_run_cannot_use_is_told_before_any_pass(spark, tmp_path, capsys, tokens, message):
    raw = write_jsonl(tmp_path / "raw.jsonl", read_jsonl(PILE)[:50])
    names = {"missing": str(tmp_path / "nowhere" / "tokenizer.json"), "raw": raw}
    config = {**config_dict(tmp_path / "run", raw), "tokens": {k: v.format(**names) for k, v in tokens.items()}}
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 2 and message.format(**names) in line, line
    assert nothing_counted(tmp_path / "run")


# ---------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("paths", [["raw", "raw/a.jsonl"], ["raw/a.jsonl", "raw/a.jsonl"], ["raw/*.jsonl", "raw"]])
def test_each_file_is_read_once_or_the_overlap_is_named(spark, tmp_path, capsys, raw_folder, paths):
    config = config_dict(tmp_path / "run", raw_folder)
    del config["raw"]["id_col"]  # generated ids: the same document twice would get two ids
    config["raw"]["paths"] = [str(tmp_path / p) for p in paths]
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3 and nothing_counted(tmp_path / "run")
    assert line == (f"dsir-spark: dataset raw: file:{raw_folder}/a.jsonl is read by two of its paths, "
                    f"{tmp_path / paths[0]} and {tmp_path / paths[1]}; each document must be read once: remove the "
                    "overlap (a folder and a file in it, or a path listed twice)")


# ---------------------------------------------------------------------------------------- selections


def raw_lengths() -> list[int]:
    """Every document's tokens as the score stage counts them (the reference's wordpunct)."""
    from dsir_spark.config import FeatureConfig
    from dsir_spark.featurizer.features import make_featurizer

    return [int(n) for n in make_featurizer(FeatureConfig()).token_counts([r["contents"] for r in ROWS])]


def fitted(run_dir) -> bool:
    from dsir_spark.run.directory import RECORD
    from dsir_spark.storage.records import read_json

    return (read_json(None, f"{run_dir}/model/{RECORD}") or {}).get("status") == "done"


@pytest.mark.parametrize("request_,message", [
    ({"num_to_sample": 1000}, "resample.num_to_sample=1000 but only {eligible} of 150 documents are eligible "
                              "(at least min_example_length=100 tokens); lower num_to_sample or min_example_length"),
    ({"num_to_sample": None, "num_tokens_to_sample": "{tokens_plus}"},
     "resample.num_tokens_to_sample={tokens_plus:,} but {eligible} of 150 documents are eligible (at least "
     "min_example_length=100 tokens), holding {tokens:,} tokens in all: it would select every one of them; lower "
     "num_tokens_to_sample (or min_example_length)"),
    ({"num_to_sample": None, "num_tokens_to_sample": "{short_minus}"},
     "resample.num_tokens_to_sample={short_minus:,} selects no document: the shortest eligible document has "
     "{shortest:,} tokens; raise num_tokens_to_sample"),
])
def test_a_request_the_raw_documents_cannot_meet_fails_after_count_before_fit(spark, tmp_path, capsys, request_,
                                                                             message):
    lengths = [n for n in raw_lengths() if n >= 100]
    facts = {"eligible": len(lengths), "tokens": sum(lengths), "shortest": min(lengths),
             "tokens_plus": sum(lengths) + 1, "short_minus": min(lengths) - 1}
    resample = {k: (int(v.format(**facts)) if isinstance(v, str) else v) for k, v in request_.items()}
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw, **resample))
    assert (code, line) == (3, "dsir-spark: " + message.format(**facts))
    assert not nothing_counted(tmp_path / "run") and not fitted(tmp_path / "run")


def test_with_a_sampled_fit_the_request_is_checked_when_the_scores_are_there(spark, tmp_path, capsys):
    lengths = [n for n in raw_lengths() if n >= 100]
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw, num_to_sample=None, num_tokens_to_sample=min(lengths) - 1)
    config["fit"]["num_tokens_to_fit"] = 20_000  # a sample: the count stage does not see every length
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3 and line.endswith(f"selects no document: the shortest eligible document has {min(lengths):,} "
                                       "tokens; raise num_tokens_to_sample")
    assert fitted(tmp_path / "run") and not (tmp_path / "run" / "output" / "_SUCCESS").exists()


def test_a_budget_whose_first_document_does_not_fit_is_an_error_not_an_empty_selection(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw, top_k=True)
    assert run_cli(tmp_path, capsys, config) == (0, "")
    scores = spark.read.parquet(str(tmp_path / "run" / "scores")).where("num_tokens >= 100").toPandas()
    first = scores.sort_values(["log_weight", "id"], ascending=[False, True]).iloc[0]
    assert scores["num_tokens"].min() < first["num_tokens"]  # a budget between them fits some, not the first
    budget = int(first["num_tokens"]) - 1
    config["resample"].update(num_to_sample=None, num_tokens_to_sample=budget)
    code, line = run_cli(tmp_path, capsys, config)
    assert (code, line) == (3, f"dsir-spark: resample.num_tokens_to_sample: a budget of {budget:,} "
                               "tokens selects no document: the first document in key order is longer than that; "
                               "raise num_tokens_to_sample")
    assert not (tmp_path / "run" / "output" / "_SUCCESS").exists()


@pytest.mark.parametrize("change,message", [
    ({"report": {"label_col": "metadata.pile_set_nme"}}, "dataset raw: label column 'metadata.pile_set_nme' not "
                                                          "found; columns are ['contents', 'id', 'metadata'] (in the "
                                                          "first 1,000 lines of up to 16 files: json_schema: sample); "
                                                          "set report.label_col (nested fields as parent.child)"),
    ({"resample": {"num_to_sample": 20, "group_col": "source", "max_share": 0.5}},
     "dataset raw: group column 'source' not found; columns are ['contents', 'id', 'metadata']"),
    ({"rename": "dsir_target"}, "dataset raw: it has a column 'dsir_target', which the selected documents get from "
                                "dsir-spark; rename that column, or set resample.add_dsir_columns: false"),
    ({"rename": "dsir_id", "raw": {"id_col": None}},
     "dataset raw: it has a column 'dsir_id', which the selected documents get from dsir-spark; rename that column, "
     "or set raw.id_col to a column of unique ids"),
])
def test_columns_the_later_stages_need_are_checked_before_any_pass(spark, tmp_path, capsys, change, message):
    rows = [{**r, "metadata": {"pile_set_name": "x"}} for r in ROWS]
    if "rename" in change:
        rows = [{**r, change["rename"]: "mine"} for r in rows]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    config = config_dict(tmp_path / "run", raw)
    for section in ("report", "resample", "raw"):
        config[section] = {**config[section], **change.get(section, {})}
    if config["raw"]["id_col"] is None:
        del config["raw"]["id_col"]
    config["report"]["enabled"] = True
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 3 and line.startswith("dsir-spark: " + message), line
    assert nothing_counted(tmp_path / "run")


# ---------------------------------------------------------------------------------------- interruptions


@pytest.mark.parametrize("signum,code", [(15, 143), (2, 130)])
def test_sigterm_and_ctrl_c_stop_the_jobs_release_the_lease_and_say_where(tmp_path, signum, code):
    """The real command line in its own process, signalled while its count stage works."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from cluster import REPO, spark_env, wait_for

    from dsir_spark.run.directory import RECORD
    from dsir_spark.storage.records import read_json

    with open(tmp_path / "raw.jsonl", "w") as handle:  # ~45 MB: the count stage takes several seconds
        for copy in range(60):
            for row in read_jsonl(PILE):
                handle.write(json.dumps({"id": f"{copy}-{row['id']}", "contents": row["contents"]}) + "\n")
    config = config_dict(tmp_path / "run", tmp_path / "raw.jsonl", num_to_sample=100)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(tmp_path / "c.yaml")],
                               cwd=REPO, env=spark_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counting = f"{tmp_path}/run/counts/{RECORD}"
    wait_for(lambda: (read_json(None, counting) or {}).get("status") == "running", 120, "the count stage")
    time.sleep(1)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert err.strip().splitlines()[-1] == ("dsir-spark: interrupted during the count stage; nothing it did looks "
                                            "complete: run again to resume")
    assert "Traceback" not in err and "\tat " not in err and signal.Signals(signum).name
    assert read_json(None, f"{tmp_path}/run/_dsir/lease")["status"] == "released"
    assert read_json(None, counting)["status"] == "running"  # never taken for done


# ---------------------------------------------------------------------------------------- true messages


def test_a_folder_mixing_json_lines_and_parquet_is_told_as_such(spark, tmp_path, capsys, raw_folder):
    import pandas as pd

    pd.DataFrame(ROWS[:10]).to_parquet(raw_folder / "c.parquet")
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw_folder))
    assert (code, line) == (3, f"dsir-spark: dataset raw: {raw_folder} holds both JSON Lines and Parquet files "
                               f"(a.jsonl, c.parquet); a path reads one format: give them as two paths ({raw_folder}/"
                               f"*.jsonl and {raw_folder}/*.parquet) or move one kind out")


def test_a_top_level_column_whose_name_holds_a_dot_is_read_back_quoted(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"id": r["id"], "my.text": r["contents"]} for r in ROWS])
    config = config_dict(tmp_path / "run", raw, output_format="json")
    config["raw"]["text_col"] = "my.text"
    code, line = run_cli(tmp_path, capsys, config)
    assert (code, line) == (3, "dsir-spark: dataset raw: text column 'my.text' is read as a nested field, but the "
                               "column is named 'my.text' itself; write it back-quoted: text_col: '`my.text`'")
    config["raw"]["text_col"] = "`my.text`"
    assert run_cli(tmp_path, capsys, config) == (0, "")
    selected = read_jsonl_folder(tmp_path / "run" / "output")
    by_id = {r["id"]: r["contents"] for r in ROWS}
    assert len(selected) == 20 and all(r["my.text"] == by_id[r["id"]] for r in selected)


def test_duplicate_ids_in_external_scores_get_advice_about_the_scores(spark, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    ids = [r["id"] for r in ROWS] + [ROWS[0]["id"]]
    scores = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"id": ids, "num_tokens": [500] * len(ids), "log_weight": [0.0] * len(ids)}), scores)
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw, scores=str(scores)))
    assert (code, line) == (3, f"dsir-spark: resample.scores {scores}: 1 document ids occur more than once, e.g. "
                               f"{ROWS[0]['id']!r} (2x); scores hold one row per raw document: deduplicate them by id")


def test_integer_ids_beyond_64_bits_are_named_as_such(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", [{**r, "id": 2**64 - 1 - i} for i, r in enumerate(ROWS)])
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert (code, line) == (3, "dsir-spark: dataset raw: id column 'id' holds integers beyond 64 bits, which Spark "
                               "reads as decimal(20,0); store such ids as strings (quoted in JSON), or leave id_col "
                               "unset to have ids derived from the rows")


def test_a_line_that_is_not_utf8_is_not_called_malformed_json(spark, tmp_path, capsys):
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, ROWS)
    with open(raw, "ab") as handle:
        handle.write(b'{"id": 99999, "contents": "caf\xe9 latin-1"}\n')
    code, line = run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw))
    assert (code, line) == (3, f"dsir-spark: dataset raw: 1 lines are not documents (1 not valid UTF-8); the first is "
                               f"in file:{raw} (not valid UTF-8); the file holds bytes that are not UTF-8 text: "
                               "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8), or set on_bad_records: skip to "
                               "leave them out (counted)")


def test_a_single_stage_after_an_input_change_says_every_stage_is_stale(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw)
    assert run_cli(tmp_path, capsys, config) == (0, "")
    write_jsonl(tmp_path / "raw.jsonl", ROWS[:-1])
    code, line = run_cli(tmp_path, capsys, config, command="score")
    assert (code, line) == (1, "dsir-spark: the input files changed since the fit stage ran (files added, removed or "
                               "modified), so its output and every stage's from count on are stale: run dsir-spark "
                               "run, which redoes them in order")


def grouped_run(tmp_path, capsys, source: list, max_share: float, caps: dict[str, float]):
    """A run with quotas on a ``source`` column (one value per row of ROWS): its config and (code, line)."""
    raw = write_jsonl(tmp_path / "raw.jsonl", [{**r, "source": value} for r, value in zip(ROWS, source)])
    config = config_dict(tmp_path / "run", raw, group_col="source", max_share=max_share,
                         group_caps=[{"value": v, "max_share": share} for v, share in caps.items()])
    return config, run_cli(tmp_path, capsys, config)


def test_group_caps_name_values_that_occur_and_null_groups_are_their_own(spark, tmp_path, capsys):
    source = [None if i % 10 == 0 else ("code" if i % 2 else "prose") for i in range(len(ROWS))]
    config, (code, line) = grouped_run(tmp_path, capsys, source, 0.6, {"Code": 0.1})
    assert (code, line) == (3, "dsir-spark: resample.group_caps: no scored document has source = 'Code'; its most "
                               "frequent values are ['code', 'prose']: check the spelling (values compare as strings)")
    config["resample"]["group_caps"] = [{"value": "code", "max_share": 0.1}]
    assert run_cli(tmp_path, capsys, config) == (0, "")
    from dsir_spark.run.directory import RECORD
    from dsir_spark.storage.records import read_json

    record = read_json(None, f"{tmp_path}/run/selection/{RECORD}")
    eligible_nulls = record["null_groups"]
    assert eligible_nulls == sum(1 for i, n in enumerate(raw_lengths()) if i % 10 == 0)
    assert set(record["groups"]) <= {"code", "prose", "null"} and "None" not in record["groups"]
    assert record["groups"]["code"]["documents"] <= 2 and sum(g["documents"] for g in record["groups"].values()) == 20


def test_a_classifier_on_one_target_document_warns_why_and_records_it(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw)
    config["fit"].update(estimator="logistic", negatives=100)
    assert run_cli(tmp_path, capsys, config) == (0, "")
    from dsir_spark.run.directory import RECORD
    from dsir_spark.storage.records import read_json

    record = read_json(None, f"{tmp_path}/run/model/{RECORD}")
    training = record["training"]["target_0"]
    assert training["positives"] == 1 and training["held_out"]["auc"] is None
    assert record["warnings"] == [
        "classifier of target_0: the classifier learned from 1 target document(s), fewer than 10: its weights then "
        "say more about fit.regularization than about the target text; give more target documents (fit.positives "
        "caps how many are used)",
        "classifier of target_0: held-out AUC not measured: no target document was held out (fit.held_out=0.1 of the "
        "sample, which held 1 target documents to learn from); raise fit.held_out or give more target documents"]


def test_more_shard_files_than_documents_and_a_tiny_fit_budget_are_said(spark, tmp_path, capsys):
    raw = write_jsonl(tmp_path / "raw.jsonl", ROWS)
    config = config_dict(tmp_path / "run", raw, shards={"num_files": 30}, out_dir=str(tmp_path / "shards"))
    code, line = run_cli(tmp_path, capsys, config)
    assert code == 2 and line.endswith("resample.shards.num_files=30 but resample.num_to_sample=20; every file needs "
                                       "at least one document: lower num_files, or use max_file_bytes")
    config = config_dict(tmp_path / "run", raw)
    config["fit"]["num_tokens_to_fit"] = 100
    assert run_cli(tmp_path, capsys, config) == (0, "")
    from dsir_spark.run.directory import RECORD
    from dsir_spark.storage.records import read_json

    (warning,) = read_json(None, f"{tmp_path}/run/counts/{RECORD}")["warnings"]
    assert warning.startswith("fit.num_tokens_to_fit=100 gave a raw fit sample of ")
    assert "fewer tokens than features.num_buckets=10,000" in warning


def test_json_ids_mixing_numbers_and_strings_are_strings_in_the_output_and_the_selection(spark, tmp_path, capsys):
    rows = [{**r, "id": str(r["id"]) if i % 2 else r["id"]} for i, r in enumerate(ROWS)]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    assert run_cli(tmp_path, capsys, config_dict(tmp_path / "run", raw)) == (0, "")
    output = spark.read.parquet(str(tmp_path / "run" / "output"))
    chosen = spark.read.parquet(str(tmp_path / "run" / "selection" / "ids"))
    assert output.schema["id"].dataType.simpleString() == chosen.schema["id"].dataType.simpleString() == "string"
    assert sorted(r["id"] for r in output.collect()) == sorted(r["id"] for r in chosen.collect())
    assert {r["id"] for r in output.collect()} <= {str(r["id"]) for r in ROWS}


@pytest.mark.slow
def test_a_jvm_out_of_memory_is_told_as_memory_not_as_a_corrupt_file(tmp_path):
    """A real OutOfMemoryError: 2 MB ids in a 512 MB driver (the score stage's writer runs out)."""
    import json
    import subprocess
    import sys

    import yaml
    from cluster import REPO, spark_env

    with open(tmp_path / "raw.jsonl", "w") as handle:
        for i, row in enumerate(ROWS + ROWS[:10]):
            handle.write(json.dumps({"id": f"{i:04d}" + "x" * 2_000_000, "contents": row["contents"]}) + "\n")
    config = config_dict(tmp_path / "run", tmp_path / "raw.jsonl", num_to_sample=150, min_example_length=0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(tmp_path / "c.yaml")],
                          cwd=REPO, env=spark_env(PYSPARK_SUBMIT_ARGS="--driver-memory 512m pyspark-shell"),
                          capture_output=True, text=True, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "corrupt" not in last, last
    assert "spark.driver.memory" in last and ("Spark ran out of memory" in last or "OutOfMemoryError" in last), last


def test_group_caps_without_room_for_k_fail_after_count_before_fit(spark, tmp_path, capsys):
    source = ["code" if i % 2 else "prose" for i in range(len(ROWS))]
    config, (code, line) = grouped_run(tmp_path, capsys, source, 0.3, {"code": 0.05})
    # prose: floor(0.3 * 20) = 6, code: floor(0.05 * 20) = 1
    assert (code, line) == (3, "dsir-spark: resample.num_to_sample=20 but the group caps leave room for at most 7 of "
                               "raw's 150 documents; raise max_share (or group_caps) or lower num_to_sample")
    assert not nothing_counted(tmp_path / "run") and not fitted(tmp_path / "run")


def test_py4js_trace_of_an_interrupted_call_is_kept_off_the_terminal():
    """py4j logs the call a Ctrl-C cut short, with its trace, on the root logger (seen in CI when the
    signal arrived inside a call): the command line drops that record, and no other."""
    import logging

    from dsir_spark.cli import _interrupted_call

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.ERROR, __file__, 1, message, None, None)

    assert not _interrupted_call(record("KeyboardInterrupt while sending command."))
    assert _interrupted_call(record("stage count: started -> runs/x/counts"))
    assert _interrupted_call(record("Exception while sending command."))  # no signal: a real failure, shown
