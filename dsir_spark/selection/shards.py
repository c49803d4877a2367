"""Shards a trainer reads: the selected documents as numbered files of bounded size, in a seeded order,
with a ``manifest.json`` that lists every file's rows, tokens, bytes and sha256.

Order: ``random`` sorts the documents by a uniform number of (seed, id), so every shard is a uniform
sample of the selection and the files can be read in any order; ``key`` puts the highest selection keys
first (ties by id). Either way the order is a function of the data and the settings alone.

Sizes: a document's size is its JSON line's bytes (UTF-8, newline included), which Spark computes. The
order is cut into bins of consecutive documents (fixed ranges of the random number, or quantiles of a
hashed sample of the keys), one pass sums each bin's bytes, and the driver assigns whole bins to shards
greedily, so that a shard's documents hold at most ``max_file_bytes`` of JSON (or about total /
``num_files``). A bin over the limit is cut finer until each fits or holds a single document: a document
larger than ``max_file_bytes`` is a shard of its own, the only file that may exceed it (the manifest
says so). Written files are smaller than their JSON bytes in practice (compressed JSON Lines, or
Parquet, of text); the manifest records their real bytes. The driver holds one row per bin, never per
document.

Writing: every shard goes to one task (partitioned by shard, sorted by the order) that writes its file
with pyarrow, named ``00000.parquet`` / ``00000.jsonl.zst`` ..., to any path pyarrow's file systems
reach (local and mounted paths, s3://, gs://, hdfs://).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from dsir_spark.config import ShardConfig
from dsir_spark.randomness import uniform

MANIFEST = "manifest.json"
# Hidden columns the staged selection carries for the shard writer: the order and the tokens.
ORDER, TOKENS, SHARD, LINE, LINE_BYTES = "__dsir_order", "__dsir_tokens", "__dsir_shard", "__dsir_line", "__dsir_bytes"
_FIRST_BINS, _MAX_REFINES, _KEY_SAMPLE = 4096, 8, 200_000
_STATS_SCHEMA = "shard int, rows long, tokens long, bytes long, sha256 string, json_bytes long"


class ShardError(ValueError):
    """Shards that do not match their manifest, or a manifest that cannot be read."""


def file_name(index: int, output_format: str, compression: str) -> str:
    if output_format == "parquet":
        return f"{index:05d}.parquet"
    return f"{index:05d}.jsonl" + {"zstd": ".zst", "gzip": ".gz", "none": ""}[compression]


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for a local path or a URI, and the path within it."""
    if "://" not in location:
        return pafs.LocalFileSystem(), os.path.abspath(location.removeprefix("file:"))
    if location.startswith("file://"):
        return pafs.LocalFileSystem(), location[len("file://"):]
    return pafs.FileSystem.from_uri(location)


def order_column(shards: ShardConfig, seed: int, ident: str, key: str):
    """The value documents are written in ascending order of (ties by id)."""
    if shards.order == "random":
        return uniform(seed, F.col(ident), "shard-order")
    return -F.col(key)


# ---------------------------------------------------------------------------------------------- planning


def _bin_boundaries(documents: DataFrame, shards: ShardConfig, bins: int, rows: int) -> np.ndarray:
    """Ascending order values that cut the order into about ``bins`` bins."""
    if shards.order == "random":
        return np.arange(1, bins, dtype=np.float64) / bins
    rate = min(1.0, max(_KEY_SAMPLE, 4 * bins) / max(rows, 1))
    sampled = F.when(uniform(0, F.col("__dsir_sid"), "shard-bins") < F.lit(rate), F.col(ORDER))
    values = np.sort(np.asarray(documents.agg(F.collect_list(sampled).alias("v")).first()["v"], dtype=np.float64))
    if len(values) == 0:
        return np.array([], dtype=np.float64)
    cuts = np.quantile(values, np.arange(1, bins, dtype=np.float64) / bins, method="lower")
    return np.unique(cuts)


def _lookup(boundaries: np.ndarray, table: np.ndarray | None = None):
    """A vectorized UDF: the bin of an order value (``table``: mapped through it, e.g. bin -> shard)."""
    @pandas_udf("int")
    def lookup(values: pd.Series) -> pd.Series:
        found = np.searchsorted(boundaries, values.to_numpy(), side="right")
        return pd.Series((found if table is None else table[found]).astype(np.int32))

    return lookup


def plan_shards(documents: DataFrame, shards: ShardConfig, rows: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(bin boundaries, shard of each bin, facts) for ``documents`` (with ORDER and LINE_BYTES): bins
    refined until each fits the limit or holds one document; whole bins assigned to shards in order."""
    bins = _FIRST_BINS
    for _ in range(_MAX_REFINES):
        boundaries = _bin_boundaries(documents, shards, bins, rows)
        sizes = (documents.groupBy(_lookup(boundaries)(F.col(ORDER)).alias("bin"))
                 .agg(F.count("*").alias("rows"), F.sum(LINE_BYTES).alias("bytes")).toPandas()
                 .sort_values("bin"))
        total = int(sizes["bytes"].sum())
        limit = shards.max_file_bytes or math.ceil(total / shards.num_files)
        crowded = sizes[(sizes["bytes"] > limit) & (sizes["rows"] > 1)]
        if crowded.empty or (shards.order == "key" and len(boundaries) + 1 < bins // 2):
            break  # fine enough (or the keys' sample cannot cut finer: equal keys)
        bins *= 2 * math.ceil(float(crowded["bytes"].max()) / limit)
    shard_of_bin = np.zeros(len(boundaries) + 1, dtype=np.int32)
    if shards.max_file_bytes:  # greedy: a new shard when the next bin would not fit
        shard, filled = 0, 0
        for index, size in zip(sizes["bin"], sizes["bytes"]):
            if filled and filled + size > limit:
                shard, filled = shard + 1, 0
            shard_of_bin[index], filled = shard, filled + size
    else:  # num_files: equal parts of the running byte total, at whole bins, then renumbered
        starts = np.concatenate([[0], np.cumsum(sizes["bytes"].to_numpy())[:-1]])
        parts = np.minimum(shards.num_files - 1, starts * shards.num_files // max(total, 1))
        _, renumbered = np.unique(parts, return_inverse=True)
        shard_of_bin[sizes["bin"].to_numpy()] = renumbered
    # Over max_file_bytes, a document is a shard of its own; num_files sets no limit a document can pass.
    oversized = int(((sizes["rows"] == 1) & (sizes["bytes"] > limit)).sum()) if shards.max_file_bytes else 0
    facts = {"bins": int(len(sizes)), "json_bytes": total, "limit_json_bytes": int(limit),
             "oversized_documents": oversized}
    return boundaries, shard_of_bin, facts


# ---------------------------------------------------------------------------------------------- writing


def _sha256_and_size(fs: pafs.FileSystem, path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with fs.open_input_stream(path, compression=None) as stream:  # the bytes as stored, never decompressed
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _ShardFile:
    """One shard being written: Parquet through pyarrow's writer, JSON Lines as lines of a stream."""

    def __init__(self, fs: pafs.FileSystem, folder: str, shard: int, output_format: str, compression: str):
        self.fs, self.shard, self.output_format = fs, shard, output_format
        self.path = f"{folder}/{file_name(shard, output_format, compression)}"
        codec = None if compression == "none" else compression
        self.rows = self.tokens = self.json_bytes = 0
        if output_format == "parquet":
            self.stream = fs.open_output_stream(self.path, compression=None)
            self.writer: pq.ParquetWriter | None = None
            self.codec = codec or "none"
        else:
            self.stream = fs.open_output_stream(self.path, compression=codec)

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self.tokens += int(np.asarray(batch.column(TOKENS)).sum())
        self.json_bytes += int(np.asarray(batch.column(LINE_BYTES)).sum())
        if self.output_format == "parquet":
            data = pa.Table.from_batches([batch.select([n for n in batch.schema.names if not n.startswith("__dsir_")])])
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.stream, data.schema, compression=self.codec)
            self.writer.write_table(data)
        else:
            lines = batch.column(LINE).to_pylist()
            self.stream.write(("\n".join(lines) + "\n").encode("utf-8"))

    def close(self) -> tuple:
        if self.output_format == "parquet" and self.writer is not None:
            self.writer.close()
        self.stream.close()
        sha256, size = _sha256_and_size(self.fs, self.path)
        return self.shard, self.rows, self.tokens, size, sha256, self.json_bytes


def _write_partition(folder: str, output_format: str, compression: str):
    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs, root = filesystem(folder)
        current: _ShardFile | None = None
        done = []
        for batch in batches:
            shard_ids = np.asarray(batch.column(SHARD))
            cuts = np.flatnonzero(np.diff(shard_ids)) + 1
            for start, end in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(shard_ids)]])):
                if start == end:
                    continue
                shard = int(shard_ids[start])
                if current is None or current.shard != shard:
                    if current is not None:
                        done.append(current.close())
                    current = _ShardFile(fs, root, shard, output_format, compression)
                current.write(batch.slice(start, end - start))
        if current is not None:
            done.append(current.close())
        if done:
            columns = list(zip(*done))
            types = [pa.int32(), pa.int64(), pa.int64(), pa.int64(), pa.string(), pa.int64()]
            yield pa.RecordBatch.from_arrays([pa.array(c, type=t) for c, t in zip(columns, types)],
                                             names=["shard", "rows", "tokens", "bytes", "sha256", "json_bytes"])

    return write


def write_shard_files(documents: DataFrame, folder: str, shards: ShardConfig, output_format: str,
                 rows: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Writes ``documents`` (their columns, plus ORDER, TOKENS and ``__dsir_sid``) as shards into
    ``folder``; returns each file's entry for the manifest (in shard order) and the plan's facts."""
    if shards.num_files is not None and shards.num_files > rows > 0:
        raise ShardError(f"resample.shards.num_files={shards.num_files} but the selection holds {rows} documents; "
                         "every file needs at least one: lower num_files, or use max_file_bytes")
    sized = documents.withColumn(LINE, F.to_json(F.struct(*[F.col(f"`{c}`") for c in documents.columns
                                                            if not c.startswith("__dsir_")])))
    sized = sized.withColumn(LINE_BYTES, F.octet_length(LINE) + F.lit(1))
    if output_format == "parquet":
        sized = sized.drop(LINE)
    boundaries, shard_of_bin, facts = plan_shards(sized, shards, rows)
    count = int(shard_of_bin.max()) + 1 if rows else 0
    fs, root = filesystem(folder)
    fs.create_dir(root, recursive=True)
    if not rows:
        return [], facts
    placed = sized.withColumn(SHARD, _lookup(boundaries, shard_of_bin)(F.col(ORDER)))
    ordered = placed.repartition(count, SHARD).sortWithinPartitions(SHARD, ORDER, "__dsir_sid")
    stats = ordered.mapInArrow(_write_partition(folder, output_format, shards.compression), _STATS_SCHEMA)
    files = []
    for row in sorted(stats.collect(), key=lambda r: r["shard"]):
        files.append({"name": file_name(row["shard"], output_format, shards.compression), "rows": row["rows"],
                      "tokens": row["tokens"], "bytes": row["bytes"], "sha256": row["sha256"],
                      "json_bytes": row["json_bytes"]})
    return files, facts


# ---------------------------------------------------------------------------------------------- manifest


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    fs, root = filesystem(folder)
    with fs.open_output_stream(f"{root}/{MANIFEST}") as stream:
        stream.write(json.dumps(manifest, indent=2, sort_keys=True, default=str).encode("utf-8"))


def move_folder(source: str, target: str) -> None:
    """Replaces ``target`` with the files of ``source`` through pyarrow's file systems (remote storage)."""
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    fs.create_dir(dst, recursive=True)
    fs.delete_dir_contents(dst, missing_dir_ok=True)
    for info in fs.get_file_info(pafs.FileSelector(src)):
        fs.move(info.path, f"{dst}/{info.base_name}")
    fs.delete_dir(src)


def read_manifest(folder: str) -> dict[str, Any]:
    fs, root = filesystem(folder)
    try:
        with fs.open_input_stream(f"{root}/{MANIFEST}") as stream:
            return json.loads(stream.read().decode("utf-8"))
    except (FileNotFoundError, OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"{folder}: no readable {MANIFEST} ({exc}); write the shards with resample.shards") from exc


def _rows_in(fs: pafs.FileSystem, path: str, name: str) -> int:
    if name.endswith(".parquet"):
        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    codec = "zstd" if name.endswith(".zst") else "gzip" if name.endswith(".gz") else None
    rows = 0
    with fs.open_input_stream(path, compression=codec) as stream:
        while chunk := stream.read(1 << 20):
            rows += chunk.count(b"\n")
    return rows


def _check_manifest_sums(folder: str, manifest: dict[str, Any]) -> None:
    """The manifest agrees with itself: its files numbered 0, 1, ... with none left out, its totals the
    sums of its files, the selection's documents and tokens those totals."""
    files = manifest["files"]
    expected_names = [file_name(i, manifest["format"], manifest["shards"]["compression"]) for i in range(len(files))]
    for entry, name in zip(files, expected_names):
        if entry["name"] != name:
            raise ShardError(f"{folder}/{MANIFEST}: lists {entry['name']} where {name} belongs: a shard and its entry "
                             "were removed or renamed; write the shards again")
    totals = manifest.get("totals", {})
    sums = {"files": len(files), **{k: sum(e[k] for e in files) for k in ("rows", "tokens", "bytes", "json_bytes")}}
    selection = manifest.get("selection", {})
    claims = [(f"totals.{k}", totals.get(k), v) for k, v in sums.items()]
    claims += [("selection.documents", selection.get("documents"), sums["rows"]),
               ("selection.tokens", selection.get("tokens"), sums["tokens"])]
    for claim, said, found in claims:
        if said != found:
            raise ShardError(f"{folder}/{MANIFEST}: {claim} says {said}, its files add up to {found}: the set is "
                             "incomplete or the manifest was edited; write the shards again")


def verify(folder: str) -> dict[str, Any]:
    """Re-reads the shards in ``folder`` against its manifest (every file's bytes, sha256 and rows, and
    no data file the manifest does not list) and the manifest against itself (see _check_manifest_sums);
    raises ShardError naming the first file or figure that differs."""
    manifest = read_manifest(folder)
    _check_manifest_sums(folder, manifest)
    fs, root = filesystem(folder)
    listed = {entry["name"] for entry in manifest["files"]}
    present = {info.base_name for info in fs.get_file_info(pafs.FileSelector(root)) if info.is_file}
    strays = sorted(present - listed - {MANIFEST})
    if strays:
        raise ShardError(f"{folder}/{strays[0]}: a file the manifest does not list; remove it or write the "
                         "shards again")
    for entry in manifest["files"]:
        path = f"{root}/{entry['name']}"
        if entry["name"] not in present:
            raise ShardError(f"{folder}/{entry['name']}: listed in the manifest but missing")
        sha256, size = _sha256_and_size(fs, path)
        if size != entry["bytes"] or sha256 != entry["sha256"]:
            raise ShardError(f"{folder}/{entry['name']}: {size} bytes with sha256 {sha256[:12]}..., the manifest says "
                             f"{entry['bytes']} bytes with {entry['sha256'][:12]}...; the file changed or is damaged")
        rows = _rows_in(fs, path, entry["name"])
        if rows != entry["rows"]:
            raise ShardError(f"{folder}/{entry['name']}: {rows} rows, the manifest says {entry['rows']}")
    return {"files": len(manifest["files"]), "rows": sum(e["rows"] for e in manifest["files"])}
