"""A class-data-sharing archive of Spark's classes, mapped by the command line's local JVMs.

The JVM of a local ``dsir-spark run`` loads and verifies about 16,000 classes of Spark before and during
its first jobs, several seconds of every run's start. Java can write the classes an application loaded
to an archive (``-XX:ArchiveClassesAtExit``) and map that archive into later JVMs
(``-XX:SharedArchiveFile``) instead of loading the classes again. ``dsir-spark warm-up`` writes one: it
runs a small pipeline under spark-submit in a JVM that dumps its classes when it exits. The command line
then gives every local JVM it starts the archive, with ``-Xshare:auto``: the JVM checks the archive
against its own Java and classpath (the jars' names, sizes and times) and runs without it where they
differ, so an upgraded Spark or Java costs the speed, never the run.

The archive lives in ``$DSIR_SPARK_CACHE`` (default ``~/.cache/dsir-spark``), one file per Spark
installation and Java; delete it to go back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("dsir_spark")
# The archive is ignored, not reported, when it does not fit this JVM (-Xshare:auto; cds logging off).
_USE_OPTIONS = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def _spark_home() -> Path:
    import pyspark

    return Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)


def _java() -> Path | None:
    """The java that spark-submit starts (JAVA_HOME's, else the first on PATH), resolved."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(os.path.realpath(found)) if found and os.path.exists(found) else None


def archive_path() -> Path | None:
    """Where the archive of this Spark installation and Java lives (None: no java found)."""
    java = _java()
    if java is None:
        return None
    jars = sorted((entry.name, entry.stat().st_size) for entry in os.scandir(_spark_home() / "jars"))
    key = json.dumps([str(_spark_home()), str(java), java.stat().st_mtime_ns, jars])
    cache = Path(os.environ.get("DSIR_SPARK_CACHE") or Path.home() / ".cache" / "dsir-spark")
    return cache / f"spark-classes-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"


def jvm_options() -> str:
    """The JVM options that map the archive, when one was written for this installation; else ""."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {_USE_OPTIONS}"


def use_in_launched_jvm() -> bool:
    """Before the command line starts Spark: has the JVM it launches map the archive, if one was written
    (and the user's SPARK_SUBMIT_OPTS name no archive of their own). Whether it will."""
    from dsir_spark.runtime.session import add_jvm_options, launches_jvm

    if not launches_jvm() or "SharedArchiveFile" in os.environ.get("SPARK_SUBMIT_OPTS", ""):
        return False
    options = jvm_options()
    if not options:
        log.info("tip: run `dsir-spark warm-up` once and local runs start several seconds sooner")
        return False
    add_jvm_options(options)
    return True


def _write_training_run(folder: Path) -> Path:
    """A tiny run (raw, target, config) that goes through every stage, the report included."""
    words = [f"w{i}" for i in range(300)]
    with open(folder / "raw.jsonl", "w", encoding="utf-8") as raw, \
            open(folder / "target.jsonl", "w", encoding="utf-8") as target:
        for i in range(400):
            text = " ".join(words[(i * 7 + j * j) % len(words)] for j in range(150))
            raw.write(json.dumps({"id": i, "text": text, "kind": f"k{i % 3}"}) + "\n")
            if i % 10 == 0:
                target.write(json.dumps({"text": text}) + "\n")
    config = folder / "config.yaml"
    config.write_text(f"""run_dir: {folder / 'run'}
raw:
  paths: [{folder / 'raw.jsonl'}]
  id_col: id
targets:
  - paths: [{folder / 'target.jsonl'}]
resample:
  num_to_sample: 40
report:
  label_col: kind
""")
    return config


def build() -> tuple[Path, float]:
    """Writes the archive (replacing one there) from a small local pipeline run; its path and seconds."""
    path = archive_path()
    if path is None:
        raise RuntimeError("no java found (JAVA_HOME or PATH): Spark cannot start either")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="dsir-spark-warm-up-") as folder:
        config = _write_training_run(Path(folder))
        script = Path(folder) / "warm_up.py"  # the command line, as spark-submit runs a file
        script.write_text("import sys\nfrom dsir_spark.cli import main\nsys.exit(main(sys.argv[1:]))\n")
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        env.pop("SPARK_SUBMIT_OPTS", None)
        command = [str(_spark_home() / "bin" / "spark-submit"), "--master", "local[2]",
                   "--driver-java-options", f"-XX:ArchiveClassesAtExit={partial}",
                   str(script), "run", "--config", str(config)]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        said = [line for line in done.stdout.splitlines() if line.startswith("dsir-spark:")] or [done.stdout[-2000:]]
        raise RuntimeError(f"the warm-up run failed (exit {done.returncode}), no archive written: {said[0]}")
    os.replace(partial, path)  # complete, or not there at all
    return path, time.time() - started
