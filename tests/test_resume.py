"""Runs that resume: a killed run restarts cleanly, a changed setting reruns only what depends on it,
and bad setups fail with a clear message and nothing marked complete."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster import REPO, spark_env, wait_for
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.cli import main
from dsir_spark.config import config_from_dict, load_config
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import read_record
from dsir_spark.run.verification import OutputError, verify_output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    rows = [{"id": copy * 10_000 + r["id"], "contents": r["contents"]} for copy in range(2) for r in read_jsonl(PILE)]
    raw = write_jsonl(root / "raw.jsonl", rows)

    def config_for(run_dir: Path, **resample) -> dict:
        return {
            "run_dir": str(run_dir),
            "raw": {"paths": [raw], "text_col": "contents", "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"num_tokens_to_fit": "all"},
            "resample": {"num_to_sample": 150, "seed": 4, **resample},
            "report": {"enabled": False},
        }

    return root, config_for


def ids(spark, run_dir: Path) -> list:
    return sorted(r.id for r in spark.read.parquet(str(run_dir / "selection" / "ids")).collect())


def stage_records(spark, run_dir: Path) -> dict:
    """Each stage's record: one written again differs (its fingerprint, finish time or seconds)."""
    folders = {"count": "counts", "fit": "model", "score": "scores", "resample": "selection"}
    return {stage: read_record(spark, str(run_dir / folder)) for stage, folder in folders.items()}


@pytest.mark.slow
def test_a_run_killed_while_scoring_completes_with_the_same_result(spark, inputs, tmp_path):
    root, config_for = inputs
    run_pipeline(spark, config_from_dict(config_for(tmp_path / "clean")))
    expected = ids(spark, tmp_path / "clean")

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(tmp_path / "run")))
    command = [sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config)]
    env = spark_env(PYSPARK_SUBMIT_ARGS="--master local[2] --conf spark.sql.files.maxPartitionBytes=300000 "
                                        "pyspark-shell")
    job = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scoring = tmp_path / "run" / "scores" / "_temporary"
    wait_for(lambda: scoring.exists() or job.poll() is not None, 300, "the score stage to start", 0.05)
    assert job.poll() is None, "the run ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert read_record(spark, str(tmp_path / "run" / "scores")) is None  # not taken for finished output

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.splitlines()[1].split()[:2] == ["count", "skipped"]  # it had completed before the kill
    assert ids(spark, tmp_path / "run") == expected


def test_changing_num_to_sample_reruns_only_resample(spark, inputs, tmp_path, capsys):
    root, config_for = inputs
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(tmp_path / "run")))
    assert main(["run", "--config", str(config)]) == 0
    before = stage_records(spark, tmp_path / "run")
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--set", "resample.num_to_sample=40", "--json"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert [json.loads(lines[s])["skipped"] for s in ("count", "fit", "score", "resample")] == [True] * 3 + [False]
    after = stage_records(spark, tmp_path / "run")
    assert {s: after[s] == before[s] for s in before} == {"count": True, "fit": True, "score": True,
                                                         "resample": False}
    assert len(ids(spark, tmp_path / "run")) == 40
    # --force recomputes everything.
    assert main(["run", "--config", str(config), "--set", "resample.num_to_sample=40", "--force", "--json"]) == 0
    forced = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert [json.loads(forced[s])["skipped"] for s in ("count", "fit", "score", "resample")] == [False] * 4


def _output(run_dir: Path) -> list[str]:
    """The published output's documents (its lines, sorted: part names change with every write)."""
    return sorted(line for f in (run_dir / "output").glob("part-*") for line in f.read_text().splitlines())


def test_an_output_removed_or_damaged_is_selected_again_and_status_says_why(spark, inputs, tmp_path, capsys):
    root, config_for = inputs
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(tmp_path / "run", output_format="json")))
    assert main(["run", "--config", str(config)]) == 0
    published = _output(tmp_path / "run")
    assert len(published) == 150

    def rerun() -> dict:
        capsys.readouterr()
        assert main(["run", "--config", str(config), "--json"]) == 0
        lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
        return {stage: json.loads(lines[stage])["skipped"] for stage in ("count", "fit", "score", "resample")}

    for damage in ("remove the folder", "remove a part", "truncate a part"):
        output = tmp_path / "run" / "output"
        if damage == "remove the folder":
            shutil.rmtree(output)
        elif damage == "remove a part":
            next(output.glob("part-*")).unlink()
        else:
            part = next(output.glob("part-*"))
            part.write_text(part.read_text()[:100])
        assert main(["status", "--config", str(config)]) == 4
        said = capsys.readouterr().out
        assert f"resample: its output {tmp_path / 'run' / 'output'} " in said, (damage, said)
        assert main(["verify", "--config", str(config)]) == 3
        assert f"{output} is not the selection of this config as it stands (resample: its output {output} " in \
            capsys.readouterr().err, damage
        assert rerun() == {"count": True, "fit": True, "score": True, "resample": False}, damage
        assert _output(tmp_path / "run") == published, damage  # the same selection, whole again
    assert rerun() == {"count": True, "fit": True, "score": True, "resample": True}
    assert main(["verify", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("verified ")
    assert main(["verify", "--config", str(config), "--set", "resample.seed=9"]) == 3  # not this config's selection
    assert "(resample: a setting changed: resample.seed: 4 -> 9)" in capsys.readouterr().err
    # Changed in place with its size kept (two documents on one line): only a re-read of the rows sees it.
    part = max((tmp_path / "run" / "output").glob("part-*"), key=lambda f: f.stat().st_size)
    part.write_text(part.read_text().replace("\n", " ", 1))
    assert main(["verify", "--config", str(config)]) == 3
    assert f"{tmp_path / 'run' / 'output'} holds 149 rows, the resample stage wrote 150" in capsys.readouterr().err
    with pytest.raises(OutputError, match="holds 149 rows"):  # an output's error, not a shard's: none is involved
        verify_output(load_config(str(config)))


def test_scores_or_counts_lost_in_part_are_made_again_not_selected_from(spark, inputs, tmp_path, capsys):
    root, config_for = inputs
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(tmp_path / "run", output_format="json")))
    spark.conf.set("spark.sql.files.maxPartitionBytes", "300000")  # scores written in several parts
    try:
        assert main(["run", "--config", str(config)]) == 0
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    selected = ids(spark, tmp_path / "run")
    parts = sorted((tmp_path / "run" / "scores").glob("part-*"))
    assert len(parts) > 1
    parts[-1].unlink()  # a selection from what is left would silently miss its documents
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 4
    assert f"score: its scores {tmp_path / 'run' / 'scores'} changed since (1 file missing" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--json"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert [json.loads(lines[s])["skipped"] for s in ("count", "fit", "score", "resample")] == [True, True, False,
                                                                                                 False]
    assert ids(spark, tmp_path / "run") == selected
    shutil.rmtree(tmp_path / "run" / "counts" / "raw")  # raw's counts lost: counted again, the target's reused
    assert main(["status", "--config", str(config)]) == 4
    assert f"count: its counts of raw in {tmp_path / 'run' / 'counts'} are gone" in capsys.readouterr().out
    assert main(["run", "--config", str(config)]) == 0
    assert stage_records(spark, tmp_path / "run")["count"]["datasets"] == {"target_0": "reused", "raw": "counted"}
    assert ids(spark, tmp_path / "run") == selected
    shutil.rmtree(tmp_path / "run" / "model" / "model.json")  # the model lost: fitted again
    assert main(["status", "--config", str(config)]) == 4
    assert f"fit: its model {tmp_path / 'run' / 'model'} is gone" in capsys.readouterr().out
    assert main(["run", "--config", str(config)]) == 0
    assert ids(spark, tmp_path / "run") == selected
    assert main(["status", "--config", str(config)]) == 0


def test_config_with_an_unknown_key_or_a_wrong_type(inputs, tmp_path, capsys):
    _, config_for = inputs
    data = config_for(tmp_path / "run")
    data["resample"]["sede"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["run", "--config", str(bad)]) == 2
    assert "unknown setting resample.sede" in capsys.readouterr().err
    data["resample"] = {"num_to_sample": "ten"}
    bad.write_text(yaml.safe_dump(data))
    assert main(["run", "--config", str(bad)]) == 2
    assert "resample.num_to_sample: expected an integer, got 'ten'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_directory_that_is_not_writable(inputs, tmp_path, capsys):
    _, config_for = inputs
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(blocker / "run")))
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"run_dir {blocker / 'run'} is not writable" in err, err


def test_a_first_run_is_quiet(tmp_path):
    """No Java stack trace on stderr when stage records, schemas or the lease do not exist yet."""
    command = [sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(REPO / "conf" / "sample.yaml"),
               "--set", f"run_dir={tmp_path / 'run'}", "--set", "report.enabled=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=spark_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Exception" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stdout.splitlines()[1].split()[:2] == ["count", "ran"]
