"""One run per run directory: a second run is refused while the first holds the lease."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import PILE, TARGET_C

from dsir_spark.cli import main
from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.lease import LEASE, LeaseError
from dsir_spark.storage.records import read_json, write_json


def config(run_dir, timeout: float = 600) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=20),
        report=ReportConfig(enabled=False),
        lease_timeout_seconds=timeout,
    )


def lease_of(spark, run_dir):
    return read_json(spark, f"{run_dir}/{LEASE}")


def test_a_second_run_is_refused_while_the_first_runs_then_allowed(spark, tmp_path):
    run_dir = tmp_path / "run"
    first_error = []

    def first_run():
        try:
            run_pipeline(spark, config(run_dir))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            first_error.append(exc)

    first = threading.Thread(target=first_run)
    first.start()
    deadline = time.time() + 120
    while (lease_of(spark, run_dir) or {}).get("status") != "held":
        assert time.time() < deadline and first.is_alive(), first_error
        time.sleep(0.2)
    with pytest.raises(LeaseError, match=rf"run_dir {run_dir} is in use by process \d+ on {socket.gethostname()} "
                                         r"\(Spark application .*\), last seen \d+ s ago"):
        run_pipeline(spark, config(run_dir))
    first.join()
    assert not first_error
    assert lease_of(spark, run_dir)["status"] == "released"
    records = run_pipeline(spark, config(run_dir))  # the first ended: allowed, and nothing to redo
    assert all(record["skipped"] for record in records.values())


def write_lease(spark, run_dir, *, host: str, pid: int, age: float) -> None:
    write_json(spark, f"{run_dir}/{LEASE}", {"status": "held", "token": "other", "host": host, "pid": pid,
                                             "app_id": "app-1", "started_at": "2026-01-01T00:00:00Z",
                                             "refreshed_at": time.time() - age})


def test_a_lease_from_another_host_can_be_taken_over_once_stale(spark, tmp_path, capsys):
    run_dir = tmp_path / "run"
    write_lease(spark, run_dir, host="elsewhere", pid=1234, age=5)
    with pytest.raises(LeaseError, match="in use by process 1234 on elsewhere"):
        run_pipeline(spark, config(run_dir, timeout=60), take_over=True)  # fresh: never taken over

    write_lease(spark, run_dir, host="elsewhere", pid=1234, age=120)
    with pytest.raises(LeaseError, match=r"last seen 12\d s ago \(over lease_timeout_seconds=60\); if that run "
                                         r"is gone, rerun with --take-over"):
        run_pipeline(spark, config(run_dir, timeout=60))
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps({**json.loads(json.dumps(config(run_dir, timeout=60).to_dict()))}))
    assert main(["run", "--config", str(config_file)]) == 1
    assert "rerun with --take-over" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["run", "--config", str(config_file), "--take-over"]) == 0
    assert lease_of(spark, run_dir)["status"] == "released"


def test_a_lease_whoseowner_exited_on_this_host_is_taken_over(spark, tmp_path):
    run_dir = tmp_path / "run"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_lease(spark, run_dir, host=socket.gethostname(), pid=sleeper.pid, age=1)
        with pytest.raises(LeaseError, match=f"in use by process {sleeper.pid}"):
            run_pipeline(spark, config(run_dir))
    finally:
        sleeper.kill()
        sleeper.wait()
    run_pipeline(spark, config(run_dir))  # the owner is gone: no need to wait for the timeout
    assert lease_of(spark, run_dir)["status"] == "released"


def test_of_runs_taking_a_lease_at_the_same_moment_exactly_one_wins(spark, tmp_path):
    """Ten tries of three runs taking one run directory's lease at once (a barrier releases them
    together): one wins every time, and the others are told who holds it."""
    from dsir_spark.run.lease import acquire

    def take(run_dir, barrier, won, refused) -> None:
        barrier.wait()
        try:
            won.append(acquire(spark, run_dir, 600))
        except LeaseError as exc:
            refused.append(str(exc))

    for attempt in range(10):
        run_dir = str(tmp_path / f"run{attempt}")
        barrier, won, refused = threading.Barrier(3), [], []
        threads = [threading.Thread(target=take, args=(run_dir, barrier, won, refused)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and len(refused) == 2, (won, refused)
        assert all(f"run_dir {run_dir} is in use by process" in message for message in refused), refused
        assert lease_of(spark, run_dir)["token"] == won[0].record["token"]
        won[0].release()


def test_a_run_that_loses_its_lease_mid_stage_records_nothing(spark, tmp_path):
    """Another run takes the run directory while a stage works: the stage writes no "done" record."""
    from dsir_spark.run.directory import RECORD
    from dsir_spark.run.lease import held
    from dsir_spark.stages.runner import run_stage

    run_dir = tmp_path / "run"

    def work():
        write_lease(spark, run_dir, host="elsewhere", pid=99, age=0)  # taken over meanwhile
        return {"rows_out": 1}

    with pytest.raises(LeaseError, match=rf"another run took run_dir {run_dir} at 2026-01-01T00:00:00Z: "
                                         r"process 99 on elsewhere .* writes nothing more"):
        with held(spark, str(run_dir), 600):
            run_stage(spark, "count", f"{run_dir}/counts", {"x": 1}, work)
    assert read_json(spark, f"{run_dir}/counts/{RECORD}")["status"] == "running"
    assert lease_of(spark, run_dir)["token"] == "other"  # the loser leaves the winner's lease alone


@pytest.mark.slow
def test_runs_started_at_the_same_moment_leave_one_complete_run(tmp_path):
    """Two `dsir-spark run` processes into one run directory at once, three times: one runs, the other is
    refused naming it; then a plain run finds every stage complete and exactly k documents selected."""
    import pyarrow.parquet as pq
    import yaml
    from cluster import REPO, spark_env

    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        config_file = tmp_path / f"run{attempt}.yaml"
        config_file.write_text(yaml.safe_dump(json.loads(json.dumps(config(run_dir).to_dict()))))
        command = [sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config_file)]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=spark_env(), cwd=REPO) for _ in range(2)]
        results = [(run.wait(timeout=900), run.communicate()[1]) for run in runs]
        assert sorted(code for code, _ in results) == [0, 1], results
        refused = next(err for code, err in results if code == 1)
        assert f"run_dir {run_dir} is in use by process" in refused.strip().splitlines()[-1], refused[-2000:]
        again = subprocess.run(command, capture_output=True, text=True, timeout=900, env=spark_env(), cwd=REPO)
        assert again.returncode == 0, again.stderr[-2000:]
        assert [line.split()[:2] for line in again.stdout.splitlines()[1:6]] == [
            [stage, "skipped"] for stage in ("count", "fit", "score", "resample", "report")], again.stdout
        assert pq.read_table(str(run_dir / "output")).num_rows == 20
