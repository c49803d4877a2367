"""Many small input files read once: a dataset of thousands of small files is copied, exactly as the
reader gives its rows (original columns, ids, text, bad-record codes, source file), into a snapshot of
Parquet files in the run directory, which every later pass reads instead of the originals.

Opening a file costs each pass about a millisecond locally and tens on object storage whatever its
size, and Spark plans at least ``spark.sql.files.openCostInBytes`` (4 MB) per file, so a crawl of
20,000 files of 10 KB costs every pass (count, score, the resample join, the report) 20,000 opens and
hundreds of tasks. The copy costs one pass.

The snapshot is kept in groups of source files (a file's group: CRC-32 of its path modulo the number
of groups, about one group per 32 MB of input), each with a fingerprint of its files' paths, sizes and
modification times: a changed, added or removed file copies its group again, not the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zlib
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.storage.io import FILE, plain_uri
from dsir_spark.storage.records import overwrite, read_json, write_json

# auto: at least this many files, of at most this many bytes on average (Spark's default open cost).
SMALL_FILES = 1000
SMALL_FILE_BYTES = 4 << 20
# A group of the snapshot holds about this many input bytes.
SNAPSHOT_FILE_BYTES = 32 << 20
_RECORD = "_dsir/compaction.json"  # under "_": Parquet readers of the snapshot skip it
GROUP = "__dsir_group"  # the snapshot's partition column: folders __dsir_group=<n>

log = logging.getLogger("dsir_spark")


def should_compact(mode: str, files: list[tuple[str, int, int]] | None) -> bool:
    """Whether a dataset of these files (path, bytes, mtime; None for a table) is read from a snapshot."""
    if files is None or mode == "never" or not files:
        return False
    if mode == "always":
        return True
    return len(files) >= SMALL_FILES and sum(size for _, size, _ in files) / len(files) <= SMALL_FILE_BYTES


def group_of(path: str, groups: int) -> int:
    """A file's group: the driver's twin of ``_group_column`` (Spark's crc32 is zlib's, over UTF-8)."""
    return zlib.crc32(path.encode("utf-8")) % groups


def _group_column(groups: int):
    return F.pmod(F.crc32(F.col(FILE)), F.lit(groups)).cast("int")


def _members(files: list[tuple[str, int, int]], groups: int) -> dict[int, list[tuple[str, int, int]]]:
    """The files (path, bytes, mtime) of each group that holds any."""
    members: dict[int, list[tuple[str, int, int]]] = {}
    for file in files:
        members.setdefault(group_of(file[0], groups), []).append(file)
    return members


def _group_key(files: list[tuple[str, int, int]]) -> str:
    """A group's fingerprint: a hash of its files' paths, sizes and modification times."""
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]


def compacted(spark: SparkSession, folder: str, frame: DataFrame, settings: dict[str, Any],
              files: list[tuple[str, int, int]]) -> DataFrame:
    """``frame`` (a dataset as ``io.read_dataset`` gives it, of these ``files``) read from its snapshot
    in ``folder``: the groups whose files changed are copied first, or the whole snapshot when the
    dataset's settings or schema changed (or a path's name in Spark may differ from the listing's)."""
    settings = {**settings, "schema": frame.schema.json()}
    input_bytes = sum(size for _, size, _ in files)
    wanted = max(1, math.ceil(input_bytes / SNAPSHOT_FILE_BYTES))
    record = read_json(spark, f"{folder}/{_RECORD}") or {}
    partial = (record.get("settings") == settings and wanted / 2 <= record.get("groups", 0) <= wanted * 2
               and all(plain_uri(path) for path, _, _ in files))
    groups = record["groups"] if partial else wanted
    members = _members(files, groups)
    keys = {str(group): _group_key(member_files) for group, member_files in members.items()}
    kept = {g: k for g, k in record.get("group_keys", {}).items() if partial and keys.get(g) == k}
    changed = sorted(int(g) for g in keys if g not in kept)
    if changed or not partial:
        started = time.time()
        # Until every group is written, the record vouches only for the groups left as they were.
        write_json(spark, f"{folder}/{_RECORD}", {"settings": settings, "groups": groups, "group_keys": kept})
        rows = frame.where(_group_column(groups).isin(changed)) if partial else frame
        # One task per group (a shuffle): each group is one Parquet file, whatever the files' splits.
        rows = rows.withColumn(GROUP, _group_column(groups)).repartition(max(1, len(changed)), GROUP)
        # Dynamic: the groups written replace theirs, the others stay.
        mode = "dynamic" if partial else "static"
        overwrite(rows).partitionBy(GROUP).option("partitionOverwriteMode", mode).parquet(folder)
        write_json(spark, f"{folder}/{_RECORD}", {"settings": settings, "groups": groups, "group_keys": keys,
                                                  "files": len(files)})
        copied = sum(len(members[group]) for group in changed)
        log.info("dataset %s: %s of %s small files (%.1f MB in all) copied into %d of the snapshot's %d groups "
                 "in %s (%.1f s)", settings["dataset"]["name"], f"{copied:,}", f"{len(files):,}", input_bytes / 1e6,
                 len(changed), groups, folder, time.time() - started)
    try:
        snapshot = spark.read.parquet(folder)
    except AnalysisException:  # no rows at all: nothing was written; the files themselves are as empty
        return frame
    # Groups of files no longer there (or now empty) may remain on disk: read only the current ones
    # that hold bytes (partition pruning).
    current = sorted(group for group, member_files in members.items() if any(size for _, size, _ in member_files))
    return snapshot.where(F.col(GROUP).isin(current)).drop(GROUP)
