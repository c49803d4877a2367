"""What a person sees while a run works: the command line in a real pseudo-terminal (progress redrawn in
place, no Spark console bar, no start-up noise, a table at the end), plain progress lines when the output
is a file, and ``dsir-spark status`` on finished, running, stale and empty run directories."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.cli import main
from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import stage_dir, stage_settings, write_record
from dsir_spark.run.lease import held
from dsir_spark.runtime.progress import Snapshot, describe
from dsir_spark.storage.records import NeedsSession

REPO = Path(__file__).resolve().parents[1]
COPIES = 12  # 12 files of 1,000 documents: a count and a score stage of several tasks, a few seconds each
NOISE = ("Using incubator modules", "resolves to a loopback address", "NativeCodeLoader", "[Stage ")


@pytest.fixture(scope="module")
def several_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    rows = read_jsonl(PILE)
    for copy in range(COPIES):
        write_jsonl(root / "raw" / f"part-{copy:02d}.jsonl", [{"text": r["contents"], "copy": copy} for r in rows])
    return root


def _config(root: Path, run_dir: Path, **extra) -> Path:
    path = run_dir.parent / f"{run_dir.name}.yaml"
    data = {"run_dir": str(run_dir), "raw": {"paths": [str(root / "raw")]},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"num_tokens_to_fit": "all"}, "resample": {"num_to_sample": 500}, **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable,
           # one task per file: several tasks per stage
           "PYSPARK_SUBMIT_ARGS": "--master local[2] --conf spark.sql.files.maxPartitionBytes=600000 pyspark-shell"}
    env.pop("SPARK_LOCAL_IP", None)  # the loopback warning is what a local run must not show
    return env


def _in_a_terminal(command: list[str]) -> tuple[int, str]:
    """Runs ``command`` with a pseudo-terminal as its stdout and stderr; returns its exit code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, cwd=REPO, env=_env())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=600), output.decode("utf-8", "replace")


def test_a_terminal_shows_progress_in_place_and_a_table_at_the_end(several_files, tmp_path):
    config = _config(several_files, tmp_path / "run", report={"label_col": "copy"})
    code, output = _in_a_terminal([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config)])
    assert code == 0, output[-3000:]
    for stage in ("count", "score"):
        # Redrawn in place: the line is cleared (carriage return, erase line) and written again.
        updates = re.findall(rf"\r\x1b\[Kstage {stage}: (\d+)/(\d+) tasks", output)
        assert updates, f"no progress line for the {stage} stage:\n{output[-3000:]}"
        assert max(int(total) for _, total in updates) >= 2
    assert not [noise for noise in NOISE if noise in output], output[:3000]
    table = output[output.index("stage     status"):].replace("\r", "")
    lines = table.splitlines()
    assert [line.split()[:2] for line in lines[1:6]] == [
        ["count", "ran"], ["fit", "ran"], ["score", "ran"], ["resample", "ran"], ["report", "ran"]]
    assert lines[1].split()[-1] == f"{COPIES * 1000:,}" and lines[4].split()[-1] == "500"
    assert lines[6].startswith(f"selection: {tmp_path / 'run' / 'output'} (500 documents, ")
    assert lines[7].startswith(f"report:    {tmp_path / 'run' / 'report' / 'report.html'} (KL reduction ")


def test_output_to_a_file_gets_a_plain_progress_line_every_progress_seconds(several_files, tmp_path):
    config = _config(several_files, tmp_path / "run", progress_seconds=0.5, report={"enabled": False})
    with open(tmp_path / "out.log", "w") as out:
        code = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config), "--json"],
                              stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=_env(), timeout=600).returncode
    text = (tmp_path / "out.log").read_text()
    assert code == 0, text[-3000:]
    assert "\x1b[K" not in text and "\r" not in text  # nothing redrawn: plain lines
    progress = re.findall(r"INFO dsir_spark: stage (count|score): (\d+)/(\d+) tasks.*\[\d+:\d\d\]$", text, re.M)
    assert {stage for stage, _, _ in progress} == {"count", "score"}, text[-3000:]
    # --json: today's machine-readable lines, one per stage
    ending = {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1]) for line in text.splitlines()[-5:]}
    assert list(ending) == ["count", "fit", "score", "resample", "report"]
    assert ending["resample"]["rows_out"] == 500 and ending["resample"]["skipped"] is False


def test_progress_seconds_zero_shows_no_progress_line(spark, tmp_path, caplog):
    rows = [{"text": r["contents"]} for r in read_jsonl(PILE)]
    config = config_from_dict({
        "run_dir": str(tmp_path / "run"), "raw": {"paths": [write_jsonl(tmp_path / "raw.jsonl", rows)]},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}], "progress_seconds": 0,
        "resample": {"num_to_sample": 10}, "report": {"enabled": False}})
    with caplog.at_level("INFO", logger="dsir_spark"):
        run_pipeline(spark, config)
    assert not [r for r in caplog.records if re.search(r"stage \w+: \d+/\d+ tasks", r.getMessage())]


def test_a_snapshot_reads_as_a_person_would_say_it():
    snapshot = Snapshot("score", 4.0, 3, 12, 84_000_000, 20_000)
    assert snapshot.seconds_left() == pytest.approx(12.0)
    assert describe(snapshot) == ("stage score: 3/12 tasks, 84.0 MB read (21.0 MB/s), 5,000 rows/s, "
                                  "about 0:12 left [0:04]")
    assert describe(Snapshot("count", 75.0, 0, 3, None, None)) == "stage count: 0/3 tasks [1:15]"
    assert Snapshot("count", 5.0, 3, 3, None, None).seconds_left() is None


# ------------------------------------------------------------------------------------------------ status


@pytest.fixture(scope="module")
def finished(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    rows = [{"id": r["id"], "text": r["contents"]} for r in read_jsonl(PILE)]
    data = {"run_dir": str(root / "run"), "raw": {"paths": [write_jsonl(root / "raw.jsonl", rows)], "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "resample": {"num_to_sample": 50}}
    run_pipeline(spark, config_from_dict(data))
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data


def _status(config: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["status", "--config", str(config), *extra])
    return code, capsys.readouterr().out


def test_status_of_a_finished_run(finished, capsys):
    code, out = _status(finished[0], capsys)
    assert code == 0, out
    assert out.splitlines()[0].endswith(": complete")
    assert [line.split()[:2] for line in out.splitlines()[2:7]] == [
        ["count", "done"], ["fit", "done"], ["score", "done"], ["resample", "done"], ["report", "done"]]
    assert "dsir-spark run would redo nothing" in out
    assert re.search(rf"lease: released by process \d+ on {re.escape(os.uname().nodename)}", out), out
    code, out = _status(finished[0], capsys, "--set", "report.enabled=false")
    assert code == 0 and "report    off" in out, out
    code, out = _status(finished[0], capsys, "--json")
    status = json.loads(out)
    assert code == 0 and status["complete"] and status["stages"][3]["rows_out"] == 50


def test_status_of_a_stale_run_names_the_setting_and_what_run_would_redo(finished, capsys):
    code, out = _status(finished[0], capsys, "--set", "resample.seed=7")
    assert code == 4, out
    assert [line.split()[:2] for line in out.splitlines()[2:7]] == [
        ["count", "done"], ["fit", "done"], ["score", "done"], ["resample", "stale"], ["report", "stale"]]
    assert "  resample: a setting changed: resample.seed: 0 -> 7" in out
    assert out.splitlines()[-2] == "  report: a setting changed: resample.seed: 0 -> 7"


def test_status_of_a_running_run_names_the_lease_holder(spark, finished, capsys, tmp_path):
    path, data = finished
    config = config_from_dict(data)
    with held(spark, config.run_dir, config.lease_timeout_seconds):
        write_record(spark, stage_dir(config, "score"), {"stage": "score", "status": "running", "fingerprint": "x"})
        code, out = _status(path, capsys)
    assert code == 4, out
    assert [line.split()[:2] for line in out.splitlines()[2:7]] == [
        ["count", "done"], ["fit", "done"], ["score", "running"], ["resample", "done"], ["report", "done"]]
    assert "  score: it is running now" in out and "  resample: an earlier stage runs again" in out
    assert re.search(rf"lease: held by process {os.getpid()} on \S+ \(this machine\), refreshed \d+ s ago \(alive\)",
                     out), out
    # The run that held it is gone: the lease is released, the score stage stays unfinished.
    code, out = _status(path, capsys)
    assert code == 4 and "score     interrupted" in out and "  score: it did not finish" in out, out
    run_pipeline(spark, config)  # back to finished for the other tests


def test_status_takes_a_remote_models_identity_from_the_stage_record(finished):
    config = config_from_dict({**finished[1], "fit": {"model": "s3a://bucket/run/model"}})
    with pytest.raises(NeedsSession):  # a run reads its model.json through Spark; status has no session
        stage_settings(config, "score", "inputs")
    recorded = {"model": {"path": "s3a://bucket/run/model", "model_json_sha256": "0" * 64}}
    assert stage_settings(config, "score", "inputs", recorded=recorded)["model"] == recorded["model"]


def test_status_of_an_empty_run_directory(finished, capsys, tmp_path):
    code, out = _status(finished[0], capsys, "--set", f"run_dir={tmp_path / 'nothing'}")
    assert code == 4, out
    assert [line.split() for line in out.splitlines()[2:7]] == [
        ["count", "missing"], ["fit", "missing"], ["score", "missing"], ["resample", "missing"], ["report", "missing"]]
    assert "  count: it never ran" in out and "lease: none (no run has started here)" in out
