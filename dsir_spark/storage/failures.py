"""Spark's failures told in one line: the dataset, file or setting, the reader's reason, what to do.

A Spark job that fails on one input file (a corrupt Parquet footer, a ``.gz`` that is not gzip or is
cut short, a Parquet column of another type) raises a Java exception whose text names the file deep
inside a stack trace. ``reading`` turns those into an ``InputError`` naming the dataset and the file;
``one_line`` gives any other failure's root cause in one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dsir_spark.config import DatasetConfig
from dsir_spark.storage.io import InputError, dataset_of

_READ_FILE = re.compile(r"Encountered error while reading file (\S+?)\.?\s")
_CAUSED_BY = re.compile(r"Caused by: (?:[\w.$]+(?:Exception|Error)): (.+)")
_TYPE_MISMATCH = re.compile(r"PARQUET_COLUMN_DATA_TYPE_MISMATCH\] Encountered error while reading file (\S+)\. "
                            r"Data type mismatches when reading Parquet column \[(.*?)\]\. Expected Spark type "
                            r"(\S+), actual Parquet type (\S+?)\.")
_NO_FILESYSTEM = re.compile(r'No FileSystem for scheme "(\w+)"')
_NO_FILESYSTEM_CLASS = re.compile(r"Class [\w.$]+FileSystem not found")  # a scheme mapped to a missing jar
_OUT_OF_MEMORY = re.compile(r"OutOfMemoryError(?::\s*([^\n]+))?")
# What py4j says when the JVM behind the session is gone (an OutOfMemoryError in a task ends it too).
_JVM_GONE = re.compile(r"Answer from Java side is empty|Connection refused|Error while (receiving|sending)"
                       # ... or its SparkContext stopped under the run (an OutOfMemoryError in a task can do that)
                       r"|SparkContext\.dagScheduler\(\)\" is null|Cannot call methods on a stopped SparkContext")
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '(dsir_spark[\w.]*)'")
# What a path's scheme needs on the classpath (Spark ships the local and HDFS file systems only).
CONNECTORS = {
    "s3": "use s3a:// paths with hadoop-aws on the classpath (e.g. --packages "
          "org.apache.hadoop:hadoop-aws:<Spark's Hadoop version>)",
    "s3a": "add hadoop-aws (e.g. --packages org.apache.hadoop:hadoop-aws:<Spark's Hadoop version>)",
    "s3n": "use s3a:// paths with hadoop-aws on the classpath",
    "gs": "add the Google Cloud Storage connector (gcs-connector-hadoop3) to the classpath",
    "abfs": "add hadoop-azure (e.g. --packages org.apache.hadoop:hadoop-azure:<Spark's Hadoop version>)",
    "abfss": "add hadoop-azure (e.g. --packages org.apache.hadoop:hadoop-azure:<Spark's Hadoop version>)",
    "wasbs": "add hadoop-azure (e.g. --packages org.apache.hadoop:hadoop-azure:<Spark's Hadoop version>)",
}


class OutOfMemory(RuntimeError):
    """Spark's JVM ran out of memory: a setting to raise, not a bad input file."""


def out_of_memory(text: str) -> str | None:
    """What to do when a failure is the JVM running out of memory, else None."""
    found = _OUT_OF_MEMORY.search(text)
    if found is None:
        return None
    what = (found.group(1) or "Java heap space").strip()
    return (f"Spark ran out of memory ({what}): no input file is at fault; give it more memory, "
            "spark.driver.memory for a local run or the driver (before the JVM starts: spark-submit "
            "--driver-memory 8g, or PYSPARK_SUBMIT_ARGS='--driver-memory 8g pyspark-shell') and "
            "spark.executor.memory on a cluster, or smaller tasks (more partitions)")


def root_cause(text: str) -> str | None:
    """The innermost ``Caused by:`` message of a Java stack trace, if any."""
    causes = _CAUSED_BY.findall(text)
    return causes[-1].strip() if causes else None


def missing_filesystem(exc: BaseException, paths: Sequence[str]) -> tuple[str, str] | None:
    """For a failure on a path whose scheme this Spark has no file system for: that path (of ``paths``)
    and what to add; None for any other failure."""
    text = str(exc)
    named = _NO_FILESYSTEM.search(text)
    if named:
        schemes = [named.group(1)]
    elif _NO_FILESYSTEM_CLASS.search(text):
        schemes = [p.split("://", 1)[0] for p in paths if "://" in p and not p.startswith(("file:", "hdfs:"))]
    else:
        return None
    for scheme in schemes:
        path = next((p for p in paths if p.startswith(f"{scheme}://")), None)
        if path is not None:
            how = CONNECTORS.get(scheme, f"add the Hadoop connector for {scheme}:// to the classpath")
            return path, f"this Spark has no file system for {scheme}:// paths; {how}"
    return None


def diagnose(exc: BaseException, configs: Sequence[DatasetConfig]) -> InputError | None:
    """The InputError an input file's failure stands for, or None when it is not one."""
    text = str(exc)
    mismatch = _TYPE_MISMATCH.search(text)
    if mismatch:
        path, column, expected, actual = mismatch.groups()
        config = dataset_of(path, configs)
        return InputError(
            f"dataset {config.name}: in {path}, column {column} is Parquet type {actual} where the other files "
            f"have {expected}; every file of a dataset needs the same column types (the text column "
            f"{config.text_col!r} a string): fix that file or move it out"
        )
    unreadable = _READ_FILE.search(text)
    if unreadable:
        path = unreadable.group(1)
        reason = root_cause(text) or "the reader failed"
        return InputError(f"dataset {dataset_of(path, configs).name}: cannot read {path} ({reason}); the file is "
                          "corrupt, cut short or not in the format its name says: fix it or move it out")
    missing = missing_filesystem(exc, [path for config in configs for path in config.paths])
    if missing:
        path, hint = missing
        return InputError(f"dataset {dataset_of(path, configs).name}: {path}: {hint}")
    return None


@contextmanager
def reading(*configs: DatasetConfig) -> Iterator[None]:
    """Turns a failure on an input file of ``configs`` into one InputError naming its dataset and file."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # Py4JJavaError locally, a gRPC error through Spark Connect
        memory = out_of_memory(str(exc))
        if memory:  # told before diagnose, which would blame the file being read when memory ran out
            raise OutOfMemory(memory) from exc
        error = diagnose(exc, configs)
        if error is None:
            raise
        raise error from None


def one_line(exc: BaseException) -> str:
    """Any failure in one line: the executors' missing library, the Java root cause, or the first line."""
    text = str(exc).strip()
    memory = out_of_memory(text)
    if memory:
        return memory
    if type(exc).__name__ in ("Py4JNetworkError", "ConnectionRefusedError") or _JVM_GONE.search(text):
        return ("Spark's JVM or its SparkContext stopped while the run worked. If its last lines above say "
                "OutOfMemoryError, " +
                out_of_memory("OutOfMemoryError").removeprefix("Spark ran out of memory (Java heap space): ") +
                "; else it was killed (e.g. by the system's out-of-memory killer) or crashed")
    module = _NO_MODULE.search(text)
    if module:
        return (f"the executors' Python cannot import {module.group(1)}: ship the package with --py-files "
                "dsir_spark.zip or install it where the executors run (spark.pyspark.python)")
    cause = root_cause(text)
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"{first} (cause: {cause})" if cause and cause not in first else first
