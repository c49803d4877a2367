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

Token files (``format: megatron``): each shard is ``00000.bin``, the documents' token ids one after the
other (uint16 where the vocabulary fits, else int32, little-endian), ``00000.idx`` in Megatron's
indexed-dataset layout (the ``MMIDIDX`` header, version 1, the dtype code, the sequence and document
counts, each sequence's length as int32, its byte offset as int64, and the document indices 0..n as
int64: one sequence per document), and ``00000.ids.jsonl``, the documents' ids in the same order. A
document's size is its tokens' bytes, so ``max_tokens`` (or ``max_file_bytes``) bounds the .bin.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
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
from dsir_spark.featurizer.model_tokens import MEGATRON_DTYPES, ModelTokenizer
from dsir_spark.randomness import uniform

MANIFEST = "manifest.json"
# Hidden columns the staged selection carries for the shard writer: the order and the tokens.
ORDER, TOKENS, SHARD, LINE, LINE_BYTES = "__dsir_order", "__dsir_tokens", "__dsir_shard", "__dsir_line", "__dsir_bytes"
SHARD_TEXT = "__dsir_shard_text"  # token files: the text the tokenizer encodes
_FIRST_BINS, _MAX_REFINES, _KEY_SAMPLE = 4096, 8, 200_000
_STATS = [("shard", pa.int32()), ("rows", pa.int64()), ("tokens", pa.int64()), ("bytes", pa.int64()),
          ("sha256", pa.string()), ("json_bytes", pa.int64()), ("idx_bytes", pa.int64()), ("idx_sha256", pa.string()),
          ("ids_bytes", pa.int64()), ("ids_sha256", pa.string())]
_STATS_SCHEMA = ", ".join(f"{name} {'int' if kind == pa.int32() else 'long' if kind == pa.int64() else 'string'}"
                          for name, kind in _STATS)
MEGATRON_HEADER = b"MMIDIDX\x00\x00"


class ShardError(ValueError):
    """Shards that do not match their manifest, or a manifest that cannot be read."""


def file_name(index: int, output_format: str, compression: str) -> str:
    if output_format == "parquet":
        return f"{index:05d}.parquet"
    if output_format == "megatron":
        return f"{index:05d}.bin"
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


def _limit(shards: ShardConfig, total: int, token_bytes: int) -> int:
    if shards.max_tokens is not None:
        return shards.max_tokens * token_bytes
    return shards.max_file_bytes or math.ceil(total / shards.num_files)


def plan_shards(documents: DataFrame, shards: ShardConfig, rows: int,
                token_bytes: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(bin boundaries, shard of each bin, facts) for ``documents`` (with ORDER and LINE_BYTES): bins
    refined until each fits the limit or holds one document; whole bins assigned to shards in order."""
    bins = _FIRST_BINS
    for _ in range(_MAX_REFINES):
        boundaries = _bin_boundaries(documents, shards, bins, rows)
        sizes = (documents.groupBy(_lookup(boundaries)(F.col(ORDER)).alias("bin"))
                 .agg(F.count("*").alias("rows"), F.sum(LINE_BYTES).alias("bytes")).toPandas()
                 .sort_values("bin"))
        total = int(sizes["bytes"].sum())
        limit = _limit(shards, total, token_bytes)
        crowded = sizes[(sizes["bytes"] > limit) & (sizes["rows"] > 1)]
        if crowded.empty or (shards.order == "key" and len(boundaries) + 1 < bins // 2):
            break  # fine enough (or the keys' sample cannot cut finer: equal keys)
        bins *= 2 * math.ceil(float(crowded["bytes"].max()) / limit)
    shard_of_bin = np.zeros(len(boundaries) + 1, dtype=np.int32)
    if shards.num_files is None:  # greedy: a new shard when the next bin would not fit
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
    oversized = int(((sizes["rows"] == 1) & (sizes["bytes"] > limit)).sum()) if shards.num_files is None else 0
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
        return self.shard, self.rows, self.tokens, size, sha256, self.json_bytes, None, None, None, None


class _TokenShardFile:
    """One shard as Megatron token files: the .bin written as documents come, the .idx and the ids at the end."""

    def __init__(self, fs: pafs.FileSystem, folder: str, shard: int, tokenizer: ModelTokenizer):
        self.fs, self.shard, self.tokenizer = fs, shard, tokenizer
        self.dtype, self.dtype_code = MEGATRON_DTYPES[tokenizer.token_bytes]
        self.path = f"{folder}/{file_name(shard, 'megatron', 'none')}"
        self.index_path, self.ids_path = self.path[:-4] + ".idx", self.path[:-4] + ".ids.jsonl"
        self.stream = fs.open_output_stream(self.path, compression=None)
        self.ids = fs.open_output_stream(self.ids_path, compression=None)
        self.lengths: list[int] = []
        self.planned = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.planned += int(np.asarray(batch.column(TOKENS)).sum())
        for ids in self.tokenizer.encode(batch.column(SHARD_TEXT).to_pylist()):
            self.stream.write(np.asarray(ids, dtype=self.dtype).tobytes(order="C"))
            self.lengths.append(len(ids))
        self.ids.write("".join(json.dumps(i) + "\n" for i in batch.column("__dsir_sid").to_pylist()).encode("utf-8"))

    def close(self) -> tuple:
        self.stream.close()
        self.ids.close()
        if sum(self.lengths) != self.planned:  # the selection counted these documents' tokens with this tokenizer
            raise ShardError(f"{self.path}: {sum(self.lengths)} tokens written where the selection counted "
                             f"{self.planned}; the tokenizer changed during the run")
        with self.fs.open_output_stream(self.index_path, compression=None) as index:
            index.write(megatron_index(self.lengths, self.tokenizer.token_bytes, self.dtype_code))
        sha256, size = _sha256_and_size(self.fs, self.path)
        idx_sha256, idx_size = _sha256_and_size(self.fs, self.index_path)
        ids_sha256, ids_size = _sha256_and_size(self.fs, self.ids_path)
        return (self.shard, len(self.lengths), sum(self.lengths), size, sha256, 0, idx_size, idx_sha256,
                ids_size, ids_sha256)


def megatron_index(lengths: list[int], token_bytes: int, dtype_code: int) -> bytes:
    """Megatron's .idx for documents of ``lengths`` tokens, one sequence per document (little-endian)."""
    sizes = np.asarray(lengths, dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes.astype(np.int64))[:-1] * token_bytes]).astype(np.int64) \
        if len(lengths) else np.zeros(0, dtype=np.int64)
    documents = np.arange(len(lengths) + 1, dtype=np.int64)
    return b"".join([MEGATRON_HEADER, struct.pack("<Q", 1), struct.pack("<B", dtype_code),
                     struct.pack("<Q", len(lengths)), struct.pack("<Q", len(documents)), sizes.astype("<i4").tobytes(),
                     pointers.astype("<i8").tobytes(), documents.astype("<i8").tobytes()])


def read_megatron_index(data: bytes) -> dict[str, Any]:
    """The parts of a Megatron .idx: dtype code, sequence lengths, pointers and document indices."""
    if data[:9] != MEGATRON_HEADER:
        raise ValueError("not a Megatron index (no MMIDIDX header)")
    version, code, sequences, documents = struct.unpack("<QBQQ", data[9:34])
    at = 34
    sizes = np.frombuffer(data, "<i4", sequences, at)
    pointers = np.frombuffer(data, "<i8", sequences, at + 4 * sequences)
    indices = np.frombuffer(data, "<i8", documents, at + 12 * sequences)
    if at + 12 * sequences + 8 * documents != len(data):
        raise ValueError(f"{len(data)} bytes where its counts make {at + 12 * sequences + 8 * documents}")
    return {"version": version, "dtype_code": code, "sizes": sizes, "pointers": pointers, "documents": indices}


def _write_partition(folder: str, output_format: str, compression: str, tokenizer: ModelTokenizer | None = None):
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
                    current = (_TokenShardFile(fs, root, shard, tokenizer) if output_format == "megatron"
                               else _ShardFile(fs, root, shard, output_format, compression))
                current.write(batch.slice(start, end - start))
        if current is not None:
            done.append(current.close())
        if done:
            columns = list(zip(*done))
            yield pa.RecordBatch.from_arrays([pa.array(c, type=kind) for c, (_, kind) in zip(columns, _STATS)],
                                             names=[name for name, _ in _STATS])

    return write


def write_shard_files(
    documents: DataFrame, folder: str, shards: ShardConfig, output_format: str, rows: int,
    tokenizer: ModelTokenizer | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Writes ``documents`` (their columns, plus ORDER, TOKENS and ``__dsir_sid``; for token files
    SHARD_TEXT) as shards into ``folder``; returns each file's entry for the manifest (in shard order)
    and the plan's facts."""
    if shards.num_files is not None and shards.num_files > rows > 0:
        raise ShardError(f"resample.shards.num_files={shards.num_files} but the selection holds {rows} documents; "
                         "every file needs at least one: lower num_files, or use max_file_bytes")
    token_bytes = tokenizer.token_bytes if output_format == "megatron" else 0
    if output_format == "megatron":  # a document's size: its tokens' bytes in the .bin
        sized = documents.withColumn(LINE_BYTES, F.col(TOKENS) * F.lit(token_bytes))
    else:
        sized = documents.withColumn(LINE, F.to_json(F.struct(*[F.col(f"`{c}`") for c in documents.columns
                                                                if not c.startswith("__dsir_")])))
        sized = sized.withColumn(LINE_BYTES, F.octet_length(LINE) + F.lit(1))
    if output_format == "parquet":
        sized = sized.drop(LINE)
    boundaries, shard_of_bin, facts = plan_shards(sized, shards, rows, token_bytes)
    count = int(shard_of_bin.max()) + 1 if rows else 0
    fs, root = filesystem(folder)
    fs.create_dir(root, recursive=True)
    if not rows:
        return [], facts
    placed = sized.withColumn(SHARD, _lookup(boundaries, shard_of_bin)(F.col(ORDER)))
    ordered = placed.repartition(count, SHARD).sortWithinPartitions(SHARD, ORDER, "__dsir_sid")
    stats = ordered.mapInArrow(_write_partition(folder, output_format, shards.compression, tokenizer), _STATS_SCHEMA)
    files = []
    for row in sorted(stats.collect(), key=lambda r: r["shard"]):
        name = file_name(row["shard"], output_format, shards.compression)
        entry = {"name": name, "rows": row["rows"], "tokens": row["tokens"], "bytes": row["bytes"],
                 "sha256": row["sha256"], "json_bytes": row["json_bytes"]}
        if output_format == "megatron":
            entry["index"] = {"name": name[:-4] + ".idx", "bytes": row["idx_bytes"], "sha256": row["idx_sha256"]}
            entry["ids"] = {"name": name[:-4] + ".ids.jsonl", "bytes": row["ids_bytes"], "sha256": row["ids_sha256"]}
        files.append(entry)
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


def rows_in(fs: pafs.FileSystem, path: str, name: str) -> int:
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
    listed = {part["name"] for entry in manifest["files"] for part in _parts(entry)}
    present = {info.base_name for info in fs.get_file_info(pafs.FileSelector(root)) if info.is_file}
    strays = sorted(present - listed - {MANIFEST})
    if strays:
        raise ShardError(f"{folder}/{strays[0]}: a file the manifest does not list; remove it or write the "
                         "shards again")
    for entry in manifest["files"]:
        for part in _parts(entry):
            if part["name"] not in present:
                raise ShardError(f"{folder}/{part['name']}: listed in the manifest but missing")
            sha256, size = _sha256_and_size(fs, f"{root}/{part['name']}")
            if size != part["bytes"] or sha256 != part["sha256"]:
                raise ShardError(f"{folder}/{part['name']}: {size} bytes with sha256 {sha256[:12]}..., the manifest "
                                 f"says {part['bytes']} bytes with {part['sha256'][:12]}...; the file changed or is "
                                 "damaged")
        if "index" in entry:
            _check_token_files(fs, root, folder, entry, manifest)
            continue
        rows = rows_in(fs, f"{root}/{entry['name']}", entry["name"])
        if rows != entry["rows"]:
            raise ShardError(f"{folder}/{entry['name']}: {rows} rows, the manifest says {entry['rows']}")
    return {"files": len(manifest["files"]), "rows": sum(e["rows"] for e in manifest["files"])}


def _parts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest entry's files: the shard, and for token files its index and its ids."""
    return [entry, *[entry[key] for key in ("index", "ids") if key in entry]]


def _check_token_files(fs: pafs.FileSystem, root: str, folder: str, entry: dict[str, Any],
                       manifest: dict[str, Any]) -> None:
    """A .bin, its .idx and its ids agree with each other and with the manifest's figures."""
    with fs.open_input_stream(f"{root}/{entry['index']['name']}", compression=None) as stream:
        try:
            index = read_megatron_index(stream.read())
        except ValueError as exc:
            raise ShardError(f"{folder}/{entry['index']['name']}: {exc}") from exc
    token_bytes = manifest["tokenizer"]["token_bytes"]
    sizes = index["sizes"]
    found = {"documents": len(index["documents"]) - 1, "tokens": int(sizes.sum()),
             "bytes": int(sizes.sum()) * token_bytes}
    said = {"documents": entry["rows"], "tokens": entry["tokens"], "bytes": entry["bytes"]}
    for what in found:
        if found[what] != said[what]:
            raise ShardError(f"{folder}/{entry['index']['name']}: indexes {found[what]} {what} where the manifest "
                             f"(and {entry['name']}) say {said[what]}; write the shards again")
    with fs.open_input_stream(f"{root}/{entry['ids']['name']}", compression=None) as stream:
        ids = stream.read().count(b"\n")
    if ids != entry["rows"]:
        raise ShardError(f"{folder}/{entry['ids']['name']}: {ids} ids for {entry['rows']} documents")
