"""Many small input files read once: a dataset of thousands of small files is copied, exactly as the
reader gives its rows (original columns, ids, text, bad-record codes, source file), into a few Parquet
files in the run directory, which every later pass reads instead of the originals.

Opening a file costs each pass about a millisecond locally and tens on object storage whatever its
size, and Spark plans at least ``spark.sql.files.openCostInBytes`` (4 MB) per file, so a crawl of
20,000 files of 10 KB costs every pass (count, score, the resample join, the report) 20,000 opens and
hundreds of tasks. The copy costs one pass; the snapshot is kept while the files are unchanged (same
listing of paths, sizes and modification times) and the dataset's settings are the same.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from dsir_spark.storage.records import overwrite, read_json, write_json

# auto: at least this many files, of at most this many bytes on average (Spark's default open cost).
SMALL_FILES = 1000
SMALL_FILE_BYTES = 4 << 20
# The snapshot's Parquet files hold about this many input bytes each.
SNAPSHOT_FILE_BYTES = 32 << 20
_RECORD = "_dsir/compaction.json"  # under "_": Parquet readers of the snapshot skip it

log = logging.getLogger("dsir_spark")


def should_compact(mode: str, files: list[tuple[str, int, int]] | None) -> bool:
    """Whether a dataset of these files (path, bytes, mtime; None for a table) is read from a snapshot."""
    if files is None or mode == "never" or not files:
        return False
    if mode == "always":
        return True
    return len(files) >= SMALL_FILES and sum(size for _, size, _ in files) / len(files) <= SMALL_FILE_BYTES


def compacted(spark: SparkSession, folder: str, frame: DataFrame, key: dict[str, Any], files: int,
              input_bytes: int) -> DataFrame:
    """``frame`` (a dataset as ``io.read_dataset`` gives it) read from its snapshot in ``folder``, written
    first unless a snapshot of the same ``key`` (settings and file listing) is there."""
    record = read_json(spark, f"{folder}/{_RECORD}")
    if record is None or record.get("key") != key:
        started = time.time()
        parts = max(1, math.ceil(input_bytes / SNAPSHOT_FILE_BYTES))
        # coalesce, not repartition: no shuffle; each of the few tasks reads its share of the small files.
        overwrite(frame.coalesce(parts)).parquet(folder)
        write_json(spark, f"{folder}/{_RECORD}", {"key": key, "files": files, "parts": parts})
        log.info("dataset %s: %s small files (%.1f MB) read once into %d Parquet files in %s (%.1f s)",
                 key["dataset"]["name"], f"{files:,}", input_bytes / 1e6, parts, folder, time.time() - started)
    return spark.read.parquet(folder)
