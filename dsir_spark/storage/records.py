"""Small records under the run directory: JSON documents (stage records, counts and model metadata,
stored schemas, the lease) and small Parquet tables (bucket counts, the log-ratio table).

Each is a folder holding one part file, the layout Spark's own writers give, so either way of writing
reads back either way. Where the driver reaches the run directory itself (a local or mounted path, and
a classic session, whose driver resolves paths as this process does), records are plain files written
atomically (a hidden temporary file, then a rename): no Spark job, a few milliseconds each instead of
0.2-0.4 s. Elsewhere (s3://, abfss://, hdfs://, dbfs:/, or a Spark Connect client, which may not see
the server's storage) they go through Spark's readers and writers, the way that always works.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import StringType, StructType

if TYPE_CHECKING:  # pandas only on the driver: Python workers import this module, and pandas costs each 1-2 s
    import pandas as pd

_JSON_PART, _PARQUET_PART = "part-00000.txt", "part-00000.parquet"


class NeedsSession(RuntimeError):
    """A read that only Spark can make (remote storage) was asked for without a session."""


def local_path(path: str) -> str | None:
    """The local file-system path of ``path``, or None for remote storage (s3://, hdfs://, dbfs:/ ...)."""
    if path.startswith("file:"):
        return path[len("file:"):] or "/"
    if "://" in path or path.startswith("dbfs:"):
        return None
    return path


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect client (its paths are resolved by a server elsewhere)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def direct_path(spark: SparkSession | None, path: str) -> str | None:
    """The path this process can read and write itself for ``path``, or None (go through Spark).
    ``spark`` None (no session yet): local paths only, anything else raises NeedsSession."""
    if spark is None:
        local = local_path(path)
        if local is None:
            raise NeedsSession(f"{path} can only be read through Spark")
        return local
    return None if is_connect(spark) else local_path(path)


def _visible(folder: str) -> list[str]:
    """The files Spark's readers see in a folder: hidden (``.``) and ``_`` files left out."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if not n.startswith((".", "_")) and os.path.isfile(os.path.join(folder, n)))


def _publish(folder: str, part: str, write) -> None:
    """Writes ``folder/part`` through a hidden temporary file and a rename, then removes every other
    file (an earlier writer's parts, checksums and markers): a reader sees the old record, no record, or
    the new one, never a mix that parses."""
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".dsir-{uuid.uuid4().hex}.tmp")
    write(temporary)
    os.replace(temporary, os.path.join(folder, part))
    for name in os.listdir(folder):
        if name != part and not name.startswith(".dsir-"):
            try:
                os.remove(os.path.join(folder, name))
            except (FileNotFoundError, IsADirectoryError):
                pass


# ---------------------------------------------------------------------------------------------- JSON


# A writer option (passed to Hadoop's output committer): write no _SUCCESS marker. Nothing in a stage
# folder carries one: a stage is complete when its record says done, so a stage that fails leaves no
# marker behind to undo, on any storage and through Spark Connect alike.
NO_SUCCESS_MARKER = "mapreduce.fileoutputcommitter.marksuccessfuljobs"


def overwrite(frame: DataFrame) -> DataFrameWriter:
    """A writer that replaces its path and writes no ``_SUCCESS`` marker (see NO_SUCCESS_MARKER)."""
    return frame.write.mode("overwrite").option(NO_SUCCESS_MARKER, "false")


def write_json(spark: SparkSession, path: str, record: dict[str, Any]) -> None:
    """Writes one JSON document as a one-line text dataset (a folder with one part file)."""
    line = json.dumps(record, sort_keys=True, default=str)
    folder = direct_path(spark, path)
    if folder is not None:
        def write(temporary: str) -> None:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(line + "\n")

        _publish(folder, _JSON_PART, write)
        return
    frame = spark.createDataFrame([(line,)], StructType().add("value", StringType()))
    overwrite(frame.coalesce(1)).text(path)


def read_json(spark: SparkSession | None, path: str) -> dict[str, Any] | None:
    """The JSON document at ``path``, or None when there is none (never written, or half written)."""
    folder = direct_path(spark, path)
    if folder is not None:
        lines = set()
        for name in _visible(folder):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    lines.update(line.rstrip("\n") for line in handle if line.strip())
            except FileNotFoundError:  # replaced while we listed: a writer is at work
                return None
    else:
        try:
            # Two (equal) paths: Spark then skips its streaming-metadata probe of a single path, which logs
            # a Java FileNotFoundException stack trace for a record that does not exist yet.
            lines = {row.value for row in spark.read.text([path, path]).collect()}
        except AnalysisException:
            return None
    if len(lines) != 1:
        return None
    try:
        return json.loads(lines.pop())
    except json.JSONDecodeError:
        return None


# ---------------------------------------------------------------------------------------------- tables


def write_table(spark: SparkSession, path: str, table: pd.DataFrame) -> None:
    """Writes a small table (thousands of rows) as a Parquet folder with one part file."""
    folder = direct_path(spark, path)
    if folder is not None:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        _publish(folder, _PARQUET_PART, lambda temporary: pq.write_table(arrow, temporary))
        return
    overwrite(spark.createDataFrame(table).coalesce(1)).parquet(path)


def table_exists(spark: SparkSession, path: str) -> bool:
    """Whether a table written by ``write_table`` is at ``path`` (read: a listing, or one footer)."""
    folder = direct_path(spark, path)
    if folder is not None:
        return bool(_visible(folder))
    try:
        _ = spark.read.parquet(path).schema
    except AnalysisException:
        return False
    return True


def read_table(spark: SparkSession, path: str) -> pd.DataFrame | None:
    """A small Parquet table written by ``write_table`` (or by Spark), or None when there is none."""
    folder = direct_path(spark, path)
    if folder is not None:
        parts = [os.path.join(folder, name) for name in _visible(folder)]
        if not parts:
            return None
        return pa.concat_tables([pq.read_table(part) for part in parts]).to_pandas()
    try:
        return spark.read.parquet(path).toPandas()
    except AnalysisException:
        return None
