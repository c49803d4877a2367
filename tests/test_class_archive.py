"""The archive of Spark's classes that local command-line runs start from (dsir-spark warm-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsir_spark.runtime import class_archive

ROOT = Path(__file__).parent.parent


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSIR_SPARK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPARK_SUBMIT_OPTS", raising=False)
    return tmp_path / "cache"


def test_no_archive_no_options_and_a_broken_one_never_stops_the_jvm(cache):
    assert class_archive.jvm_options() == ""
    path = class_archive.archive_path()
    assert path.parent == cache and path.name.startswith("spark-classes-")
    cache.mkdir()
    path.write_bytes(b"not an archive" * 1000)  # e.g. another Java wrote it, or a disk filled up
    options = class_archive.jvm_options()
    assert f"-XX:SharedArchiveFile={path}" in options and "-Xshare:auto" in options
    java = class_archive._java()
    shown = subprocess.run([str(java), *options.split(), "-version"], capture_output=True, text=True)
    assert shown.returncode == 0 and "cds" not in (shown.stdout + shown.stderr).lower()


def test_the_archive_goes_only_to_a_jvm_this_process_launches(cache):
    """In a fresh process (no session yet): plain python gets the archive beside its own options; a process
    under spark-submit (whose JVM runs already) and a user who names their own archive do not."""
    cache.mkdir()
    path = class_archive.archive_path()
    path.write_bytes(b"x")
    probe = ("import json, os; from dsir_spark.runtime.class_archive import use_in_launched_jvm as use; "
             "print(json.dumps([use(), os.environ.get('SPARK_SUBMIT_OPTS')]))")

    def launched(**env: str) -> list:
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)

    used, options = launched(SPARK_SUBMIT_OPTS="-Dmine=1")
    assert used and options.startswith("-Dmine=1 ") and f"-XX:SharedArchiveFile={path} -Xshare:auto" in options
    assert launched(PYSPARK_GATEWAY_PORT="1") == [False, None]
    theirs = "-XX:SharedArchiveFile=/theirs.jsa"
    assert launched(SPARK_SUBMIT_OPTS=theirs) == [False, theirs]


@pytest.mark.slow
def test_warm_up_writes_the_archive_a_local_run_then_maps(cache, tmp_path):
    """dsir-spark warm-up, then the quick start: most classes its JVM loads come from the archive."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "warm-up"], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    path = class_archive.archive_path()
    assert path.is_file() and path.stat().st_size > 50e6 and f"wrote {path}" in done.stdout
    assert not list(cache.glob("*.partial"))
    loaded = tmp_path / "classes.txt"
    env["SPARK_SUBMIT_OPTS"] = f"-Xlog:class+load=info:file={loaded}"
    run = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", "conf/sample.yaml",
                          "--set", f"run_dir={tmp_path / 'run'}"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    sources = loaded.read_text().splitlines()
    shared = sum("shared objects file (top)" in line for line in sources)
    from_jars = sum("source: jar:" in line or "source: file:" in line for line in sources)
    assert shared > 10_000 and shared > 10 * from_jars


def test_every_command_but_warm_up_needs_a_config(capsys):
    from dsir_spark.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run"])
    assert exited.value.code == 2 and "run needs --config FILE" in capsys.readouterr().err
