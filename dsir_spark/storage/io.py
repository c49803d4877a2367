"""Reading datasets, only through Spark's readers (small records: ``dsir_spark.storage.records``).

Every path goes through the DataFrame API, so local paths, HDFS, s3://, abfss:// and dbfs:/ work alike,
from a Spark Connect client too.

Document ids: with ``id_col`` the dataset's own column is used. Without it, each row gets
``dsir_id`` = the first 32 hex digits (128 bits) of sha256 over (the position of its path in
``paths``, its file's path, the row serialized as JSON). That id does not depend on partitioning,
executors or reruns; it changes if the file moves or the row changes. Two identical rows in one file
get the same id; the resample stage rejects duplicate ids, so give an ``id_col`` (or deduplicate) for
such data.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DecimalType,
    IntegralType,
    MapType,
    StringType,
    StructField,
    StructType,
    VariantType,
)

from dsir_spark.columns import ID, TEXT
from dsir_spark.config import TABLE_PREFIX, DatasetConfig, table_name_parts
from dsir_spark.storage.json_records import (
    RECORD,
    SAMPLE,
    SAMPLE_FILES,
    SAMPLE_LINES,
    record_columns,
    sampled_files,
    sampled_schema,
    whole_lines,
)
from dsir_spark.storage.records import NeedsSession, direct_path

BAD = "bad"
FILE = "__dsir_file"  # the hidden column of a row's file (or table), see _tagged
CORRUPT = "_corrupt_record"
# What a row is (``__dsir_bad``): a document, or a JSON line Spark could not parse, and why.
GOOD, MALFORMED, TOO_LONG, NOT_STRING, NO_TEXT, NOT_UNICODE, NOT_UTF8 = 0, 1, 2, 3, 4, 5, 6
BAD_REASONS = {MALFORMED: "malformed JSON", TOO_LONG: "too long for the JSON reader",
               NOT_STRING: "text is not a string", NO_TEXT: "no text field",
               NOT_UNICODE: "text is not valid Unicode", NOT_UTF8: "not valid UTF-8"}
# An escaped UTF-16 surrogate without its other half (e.g. "\ud800"): valid JSON syntax, but no Unicode
# text; Spark's JSON reader refuses the line, which is then told apart from other malformed lines.
_LONE_SURROGATE = (r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                   r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
# Jackson's default limit on one JSON string, which Spark's JSON reader applies (option maxStringLen).
JSON_MAX_STRING_LENGTH = 20_000_000
log = logging.getLogger("dsir_spark")


class InputError(ValueError):
    """A dataset cannot be read as configured: the message names the dataset and the path or column."""


_COMPRESSION = (".gz", ".bz2", ".zst", ".snappy", ".lz4", ".deflate")
_SUFFIXES = {"json": (".jsonl", ".json", ".ndjson"), "parquet": (".parquet", ".parq")}


def _path_not_found(dataset: str, path: str) -> InputError:
    relative = ":" not in path and not path.startswith("/")
    where = f" (relative to {os.getcwd()}, where the command runs)" if relative else ""
    return InputError(f"dataset {dataset}: path {path} does not exist{where}; check the path or glob")


_NAME_PART = re.compile(r"`([^`]*)`|([^.`]+)")


def name_parts(dotted: str) -> list[str]:
    """The parts of a (possibly nested, possibly back-quoted) column name: ``metadata.text``, or
    ```my.text``` for a top-level column whose name holds a dot."""
    return [quoted or plain for quoted, plain in _NAME_PART.findall(dotted)]


def _format_by_suffix(path: str) -> str | None:
    lowered = path.lower()
    for suffix in _COMPRESSION:
        lowered = lowered.removesuffix(suffix)
    for fmt, suffixes in _SUFFIXES.items():
        if lowered.endswith(suffixes):
            return fmt
    return None


@dataclass
class SeenInputs:
    """What a block (a run) has seen of its inputs: each path's listing, each dataset's opened frame (a
    plan, no data: run.directory.open_dataset keeps them) and small input files read (``read_once``)."""

    listings: dict[str, list[tuple[str, int, int]]] = dataclass_field(default_factory=dict)
    frames: dict[str, DataFrame] = dataclass_field(default_factory=dict)
    refreshed: set[str] = dataclass_field(default_factory=set)  # frames opened after checking their files
    small_files: dict[str, Any] = dataclass_field(default_factory=dict)  # e.g. a model.json from elsewhere


def read_once(path: str, read: Callable[[], Any]) -> Any:
    """``read()``, once per block of ``one_listing`` for the input file ``path`` (outside one, every time)."""
    seen = _SEEN.get()
    if seen is None:
        return read()
    if path not in seen.small_files:
        seen.small_files[path] = read()
    return seen.small_files[path]


_SEEN: ContextVar[SeenInputs | None] = ContextVar("dsir_seen_inputs", default=None)


@contextmanager
def one_listing(fresh: bool = False) -> Iterator[SeenInputs]:
    """Within this block every input path is listed once and every dataset opened once: the plan, the
    fingerprints and each stage reuse the first listing and frame (a run's inputs are taken to stay as
    they were when it started). ``fresh``: list again inside a block that already lists once (has
    anything changed since?)."""
    seen = _SEEN.get()
    if seen is not None and not fresh:  # an enclosing block already lists once
        yield seen
        return
    token = _SEEN.set(SeenInputs())
    try:
        yield _SEEN.get()
    finally:
        _SEEN.reset(token)


def list_files(spark: SparkSession | None, path: str) -> list[tuple[str, int, int]]:
    """(path, bytes, modification time in seconds) of every file a path, folder or glob holds, from Spark's
    own file listing (no contents read; Spark's hidden and ``_`` files are left out)."""
    seen = _SEEN.get()
    if seen is not None and path in seen.listings:
        return seen.listings[path]
    files = _local_listing(spark, path)
    if files is None and spark is None:
        raise NeedsSession(f"{path} can only be listed through Spark")
    if files is None:
        listing = spark.read.format("binaryFile").load(path).select(
            "path", "length", F.col("modificationTime").cast("long").alias("mtime"))
        files = sorted((r["path"], int(r["length"]), int(r["mtime"])) for r in listing.collect())
    if seen is not None:
        seen.listings[path] = files
    return files


# Paths whose URI form is the path itself (Spark would escape other characters), globs of * and ? only.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+=@,:*?-]+")


def plain_uri(path: str) -> bool:
    """Whether Spark's own name of a file (``_metadata.file_path``) is this listing's name for it."""
    return bool(_PLAIN_PATH.fullmatch(path))


def _local_listing(spark: SparkSession | None, path: str) -> list[tuple[str, int, int]] | None:
    """Spark's listing of a local file, folder of files or glob of files, read without a Spark job; None
    where Spark's rules might differ (remote storage, Spark Connect, subfolders, names Spark hides or
    escapes, nothing found), and Spark lists instead."""
    local = direct_path(spark, path)
    if local is None or not _PLAIN_PATH.fullmatch(local):
        return None
    if glob.has_magic(local):
        found = glob.glob(local)
    elif os.path.isdir(local):
        found = [entry.path for entry in os.scandir(local)]
    else:
        found = [local] if os.path.isfile(local) else []
    names = [os.path.basename(f) for f in found]
    hidden = [n for n in names if n.startswith(("_", ".")) or n.endswith("._COPYING_")]
    if not found or any(os.path.isdir(f) for f in found if not os.path.basename(f).startswith(("_", "."))):
        return None
    if glob.has_magic(local) and hidden:
        return None
    files = []
    for name, file in zip(names, found):
        if name.startswith(("_", ".")) or name.endswith("._COPYING_"):
            if name.startswith(("_metadata", "_common_metadata")):
                return None  # Spark keeps these
            continue
        stat = os.stat(file)
        files.append((f"file:{os.path.abspath(file)}", stat.st_size, stat.st_mtime_ns // 1_000_000_000))
    return sorted(files)


def _format_of(spark: SparkSession, path: str, declared: str, dataset: str) -> str:
    """The format to read a path with: a table, the file's suffix, or, for a folder or a glob of
    unknown suffix, the suffixes of the files in it; a file of another kind is named, not read."""
    if path.startswith(TABLE_PREFIX):
        return "table"
    by_suffix = _format_by_suffix(path)
    if by_suffix is not None and declared in ("auto", by_suffix):
        return by_suffix
    if declared != "auto" and by_suffix is None and "." in path.rsplit("/", 1)[-1]:
        return declared  # a single file named otherwise, read as declared
    try:
        files = list_files(spark, path)
    except AnalysisException as exc:
        raise _path_not_found(dataset, path) from exc
    kinds = {name: _format_by_suffix(name) for name, _, _ in files}
    found = {kind for kind in kinds.values() if kind}
    expected = {declared} if declared != "auto" else found
    strays = [name for name, kind in kinds.items() if kind is None or kind not in expected]
    if not files:
        raise InputError(f"dataset {dataset}: {path} holds no data files; check the path")
    if not strays and len(found) > 1:
        first = {kind: name for name, kind in sorted(kinds.items(), reverse=True)}
        raise InputError(
            f"dataset {dataset}: {path} holds both JSON Lines and Parquet files ({first['json'].rsplit('/', 1)[-1]}, "
            f"{first['parquet'].rsplit('/', 1)[-1]}); a path reads one format: give them as two paths "
            f"({path.rstrip('/')}/*.jsonl and {path.rstrip('/')}/*.parquet) or move one kind out"
        )
    if strays or len(found) != 1:
        wanted = "Parquet or JSON Lines files" if declared == "auto" else f"{declared} files"
        stray = strays[0] if strays else sorted(kinds)[0]
        raise InputError(
            f"dataset {dataset}: {path} holds {stray.rsplit('/', 1)[-1]} ({stray}), which is not one of its "
            f"{wanted}; move it out, or point paths at the data files (e.g. {path.rstrip('/')}/*.parquet)"
        )
    return found.pop()


def _json_reader(spark: SparkSession, schema: str | None, config: DatasetConfig):
    # Malformed lines land in CORRUPT (PERMISSIVE mode) instead of becoming empty documents unseen.
    reader = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    if config.json_max_string_length:
        reader = reader.option("maxStringLen", str(config.json_max_string_length))
    if schema:  # a known schema spares Spark its inference pass over every byte of the files
        struct = _with_text_checked(StructType.fromJson(json.loads(schema)), config)
        if CORRUPT not in struct.fieldNames():
            struct = struct.add(CORRUPT, StringType())
        reader = reader.schema(struct)
    return reader


def _with_text_checked(struct: StructType, config: DatasetConfig) -> StructType:
    # Inferred as a string (a mix of strings and numbers is too): check each value's own type. Any
    # other inferred type fails early, in _resolve_text.
    if isinstance(_field_type(struct, config.text_col), StringType):
        return _with_variant_text(struct, name_parts(config.text_col))
    return struct


def _read_whole_lines(spark: SparkSession, path: str, config: DatasetConfig, schema: str) -> DataFrame:
    """A JSON path read whole (json_records): RECORD and CORRUPT, and the columns of its sampled
    ``schema`` (read_dataset finds it first) taken from RECORD, as the rest of a run expects them from
    the JSON reader."""
    struct = _with_text_checked(StructType.fromJson(json.loads(schema)), config)
    frame = whole_lines(_json_reader(spark, None, config), CORRUPT).json(path)
    return frame.select(*record_columns(struct), RECORD, CORRUPT)


def _read_one(spark: SparkSession, path: str, fmt: str, config: DatasetConfig, schema: str | None = None) -> DataFrame:
    dataset = config.name
    try:
        if fmt == "table":
            frame = spark.read.table(path.removeprefix(TABLE_PREFIX))
            _ = frame.schema  # Spark Connect analyzes lazily: a missing table should fail here
            return frame
        if fmt == "json" and config.json_schema == SAMPLE:
            return _read_whole_lines(spark, path, config, schema)
        if fmt == "json":
            return _json_reader(spark, schema, config).json(path)
        return spark.read.parquet(path)
    except AnalysisException as exc:
        message = str(exc).split("\n")[0]
        if "PATH_NOT_FOUND" in message or "does not exist" in message.lower():
            raise _path_not_found(dataset, path) from exc
        if "TABLE_OR_VIEW_NOT_FOUND" in message:
            raise InputError(f"dataset {dataset}: table {path} not found in the catalog; check its catalog, "
                             "schema and table name") from exc
        if fmt == "table":
            raise InputError(f"dataset {dataset}: cannot read {path} ({message}); check its catalog, schema "
                             "and table name") from exc
        raise InputError(
            f"dataset {dataset}: cannot read {path} as {fmt} ({message}); set format: parquet|json|table"
        ) from exc


def _with_variant_text(schema: StructType, parts: list[str]) -> StructType:
    """``schema`` with the (possibly nested) text field typed VARIANT: the JSON reader then keeps each
    value's own type, so a number is seen as a number instead of being turned into text."""
    fields = []
    for field in schema.fields:
        if field.name == parts[0]:
            inner = VariantType() if len(parts) == 1 else _with_variant_text(field.dataType, parts[1:])
            field = StructField(field.name, inner, True)
        fields.append(field)
    return StructType(fields)


def replace_text(df: DataFrame, text_col: str, value: Column) -> DataFrame:
    """``df`` with its (possibly nested, dotted) text column replaced by ``value``."""
    return df.select(*_with_text(df.columns, name_parts(text_col), value))


def _with_text(columns: Sequence[str], parts: list[str], value: Column) -> list[Column]:
    """``columns`` to select, the (possibly nested) text field ``parts`` among them replaced by ``value``."""
    selected = []
    for name in columns:
        column = F.col(f"`{name}`")
        if name == parts[0]:
            column = (value if len(parts) == 1 else column.withField(".".join(parts[1:]), value)).alias(name)
        selected.append(column)
    return selected


def _tagged(df: DataFrame, config: DatasetConfig, limit: int, index: int, path: str, fmt: str) -> DataFrame:
    """A path's rows in one select (each further DataFrame costs the driver a round of Spark's analysis):
    its columns, a text read as VARIANT a string again (only from a JSON string: values are never
    coerced), and hidden columns: ``__dsir_bad`` (GOOD, or why a JSON line is not a document, see
    BAD_REASONS), ``__dsir_file`` (its file, or table) and ``__dsir_source`` (the path's index and the
    file, which ids are derived from)."""
    bad = F.lit(GOOD)
    columns = [c for c in df.columns if c != CORRUPT]
    kept = [F.col(f"`{c}`") for c in columns]
    if isinstance(_field_type(df.schema, config.text_col), VariantType):
        text = F.col(config.text_col)
        kind = F.schema_of_variant(text)
        bad = (F.when(text.isNull(), F.lit(NO_TEXT))
               .when((kind != F.lit("STRING")) & (kind != F.lit("VOID")), F.lit(NOT_STRING)).otherwise(bad))
        value = F.when(kind == F.lit("STRING"), F.variant_get(text, "$", "string"))
        kept = _with_text(columns, name_parts(config.text_col), value)
    if CORRUPT in df.columns:
        corrupt = F.col(CORRUPT)
        bad = (F.when(corrupt.isNull(), bad)
               .when(F.length(corrupt) >= F.lit(limit), F.lit(TOO_LONG))
               .when(corrupt.rlike(_LONE_SURROGATE), F.lit(NOT_UNICODE))
               # Spark keeps a line's bytes as they are: the JSON parser refuses those that are not UTF-8
               .when(~F.is_valid_utf8(corrupt), F.lit(NOT_UTF8)).otherwise(F.lit(MALFORMED)))
    location = F.lit(path.removeprefix(TABLE_PREFIX)) if fmt == "table" else F.col("_metadata.file_path")
    return df.select(*kept, bad.alias("__dsir_bad"), location.alias(FILE),
                     F.concat_ws("\u0000", F.lit(str(index)), location).alias("__dsir_source"))


def _field_type(schema: StructType, dotted: str):
    """The type of a (possibly nested, dotted) field, or None; no query is analyzed, so nothing is logged."""
    node = schema
    for part in name_parts(dotted):
        if not isinstance(node, StructType) or part not in node.fieldNames():
            return None
        node = node[part].dataType
    return node


def require_column(df: DataFrame, config: DatasetConfig, column: str, role: str, setting: str):
    field_type = _field_type(df.schema, column)
    if field_type is None:
        shown = original_columns(df)
        if column in shown:  # a top-level name with a dot in it, read as parent.child
            raise InputError(f"dataset {config.name}: {role} column {column!r} is read as a nested field, but the "
                             f"column is named {column!r} itself; write it back-quoted: {setting}: '`{column}`'")
        if RECORD in df.columns:  # the columns are those of the sampled lines
            raise InputError(f"dataset {config.name}: {role} column {column!r} not found; columns are {shown} (in "
                             f"the first {SAMPLE_LINES:,} lines of up to {SAMPLE_FILES} files: json_schema: sample); "
                             f"set {setting} (nested fields as parent.child), or json_schema: null to have Spark "
                             "infer the columns from every line")
        if config.json_schema not in (None, SAMPLE):  # declared: the column may be missing from json_schema
            raise InputError(f"dataset {config.name}: {role} column {column!r} not found; columns are {shown} (the "
                             f"JSON files' columns are those json_schema declares); add it to json_schema, or set "
                             f"{setting} (nested fields as parent.child)")
        raise InputError(
            f"dataset {config.name}: {role} column {column!r} not found; columns are {shown}; "
            f"set {setting} (nested fields as parent.child)"
        )
    return field_type


def _resolve_text(df: DataFrame, config: DatasetConfig) -> Column:
    field_type = require_column(df, config, config.text_col, "text", "text_col")
    if not isinstance(field_type, StringType):
        raise InputError(
            f"dataset {config.name}: text column {config.text_col!r} has type {field_type.simpleString()}, "
            "not string; point text_col at a string field"
        )
    return F.col(config.text_col)


def _require_id_type(field_type, config: DatasetConfig) -> None:
    """Ids are strings or integers: values that compare, print and round-trip the same in Python and in
    Spark (a float NaN or a struct does not)."""
    if isinstance(field_type, DecimalType) and field_type.scale == 0:
        raise InputError(
            f"dataset {config.name}: id column {config.id_col!r} holds integers beyond 64 bits, which Spark reads as "
            f"{field_type.simpleString()}; store such ids as strings (quoted in JSON), or leave id_col unset to have "
            "ids derived from the rows"
        )
    if not isinstance(field_type, (StringType, IntegralType)):
        raise InputError(
            f"dataset {config.name}: id column {config.id_col!r} has type {field_type.simpleString()}, which "
            "cannot be an id; ids must be strings or integers: point id_col at such a column, or leave id_col "
            "unset to have ids derived from the rows"
        )


def _as_read(spark: SparkSession, config: DatasetConfig) -> DatasetConfig:
    """``config`` as its paths are read: ``json_schema: sample`` (lines read whole) needs every path to be
    JSON Lines; a dataset that mixes in Parquet or a table has its JSON paths' schema inferred."""
    if config.json_schema != SAMPLE or all(_format_of(spark, path, config.format, config.name) == "json"
                                           for path in config.paths):
        return config
    return replace(config, json_schema=None)


def json_schemas(spark: SparkSession, config: DatasetConfig) -> list[str | None]:
    """The schema of each JSON path of a dataset, as JSON: the dataset's ``json_schema`` when declared,
    the columns of the first lines of a few files with ``sample`` (json_records), else what Spark infers
    (one pass over its files); None for Parquet and tables, whose schema costs nothing to read."""
    schemas: list[str | None] = []
    config = _as_read(spark, config)
    for path in config.paths:
        fmt = _format_of(spark, path, config.format, config.name)
        schemas.append(_json_schema(spark, path, config) if fmt == "json" else None)
    return schemas


def _json_schema(spark: SparkSession, path: str, config: DatasetConfig) -> str:
    if config.json_schema == SAMPLE:  # the first lines of a few files, never a pass over all of them
        try:
            files = [name for name, size, _ in list_files(spark, path) if size > 0]
        except AnalysisException as exc:
            raise _path_not_found(config.name, path) from exc
        reader = whole_lines(_json_reader(spark, None, config), CORRUPT)
        return sampled_schema(reader, sampled_files(files)).json()
    return _declared_schema(config) if config.json_schema else _read_one(spark, path, "json", config).schema.json()


def _declared_schema(config: DatasetConfig) -> str:
    """A dataset's ``json_schema`` (Spark DDL) as a schema's JSON; parsed by Spark, so any DDL it reads works."""
    try:
        schema = DataType.fromDDL(config.json_schema)
    except Exception as exc:  # Spark's parser raises its own errors, classic and Connect alike
        detail = str(exc).strip().splitlines()[0]
        raise InputError(f"dataset {config.name}: json_schema {config.json_schema!r} is not a schema Spark reads "
                         f"({detail}); write it as DDL: 'id BIGINT, text STRING, meta STRUCT<source STRING>'") from exc
    if not isinstance(schema, StructType):
        raise InputError(f"dataset {config.name}: json_schema {config.json_schema!r} is a single type, not columns; "
                         "name each column with its type: 'id BIGINT, text STRING'")
    return _by_name(schema).json()


def _by_name(data_type: DataType) -> DataType:
    """``data_type`` with every struct's fields in name order, the order Spark's JSON inference gives them:
    the same columns declared in any order then read, are written and derive ids as inferred ones do."""
    if isinstance(data_type, StructType):
        return StructType([StructField(f.name, _by_name(f.dataType), f.nullable, f.metadata)
                           for f in sorted(data_type.fields, key=lambda f: f.name)])
    if isinstance(data_type, ArrayType):
        return ArrayType(_by_name(data_type.elementType), data_type.containsNull)
    if isinstance(data_type, MapType):
        return MapType(data_type.keyType, _by_name(data_type.valueType), data_type.valueContainsNull)
    return data_type


def _require_json_lines(spark: SparkSession, config: DatasetConfig, path: str) -> None:
    """For a JSON path none of whose lines parsed: names its first non-empty file as a JSON array (a
    pretty-printed list of documents) or as not JSON Lines, with the first line that is not a document;
    returns when the files are empty (no documents, said by the caller)."""
    for file, size, _ in list_files(spark, path):
        if size == 0:
            continue
        lines = [row.value for row in spark.read.text(file).limit(1000).collect()]
        number, line = next(((n, text) for n, text in enumerate(lines, 1) if text.strip()), (0, ""))
        if not line:
            continue
        if line.lstrip().startswith("["):
            raise InputError(
                f"dataset {config.name}: {file} is a JSON array, not JSON Lines (one JSON object per line); "
                "convert it, e.g. jq -c '.[]' array.json > documents.jsonl"
            )
        raise InputError(
            f"dataset {config.name}: {file} is not JSON Lines: line {number} is not a JSON object "
            f"({line.strip()[:60]!r}); give JSON Lines (one JSON object per line) or Parquet, or fix the file"
        )


def _require_text(frame: DataFrame, config: DatasetConfig, path: str) -> None:
    field_type = _field_type(frame.schema, config.text_col)
    if isinstance(field_type, VariantType):  # JSON: each value's type is checked row by row
        return
    if field_type is None:
        columns = [c for c in frame.columns if c != CORRUPT]
        raise InputError(f"dataset {config.name}: {path} has no text column {config.text_col!r} (its columns: "
                         f"{columns}); every path needs the text column, as a string")
    if not isinstance(field_type, StringType):
        raise InputError(f"dataset {config.name}: in {path}, text column {config.text_col!r} has type "
                         f"{field_type.simpleString()}, not string; point text_col at a string field")


def _require_each_file_once(spark: SparkSession, config: DatasetConfig) -> None:
    """Fails when two paths of a dataset read the same file or table (a folder and a file in it, a path
    listed twice): its documents would be counted, scored and selected twice, under different ids."""
    reader: dict[str, int] = {}
    for index, path in enumerate(config.paths):
        if path.startswith(TABLE_PREFIX):
            names = [".".join(table_name_parts(path[len(TABLE_PREFIX):], "paths")).replace("`", "").lower()]
        else:
            try:
                names = [name for name, _, _ in list_files(spark, path)]
            except AnalysisException:  # a missing path: the reader says so
                continue
        for name in names:
            first = reader.setdefault(name, index)
            if first != index:
                raise InputError(
                    f"dataset {config.name}: {name} is read by two of its paths, {config.paths[first]} and {path}; "
                    "each document must be read once: remove the overlap (a folder and a file in it, or a path "
                    "listed twice)"
                )


def read_dataset(spark: SparkSession, config: DatasetConfig, schemas: Sequence[str | None] | None = None) -> DataFrame:
    """All rows of a dataset with their original columns, plus ``id`` and ``text`` prefixed ``__dsir_``.

    ``schemas`` (from ``json_schemas``, one per path) skips JSON schema inference. Use ``documents`` to
    get the (id, text) pairs that the stages work on.
    """
    if len(config.paths) > 1:
        _require_each_file_once(spark, config)
    read_as = _as_read(spark, config)
    if read_as != config:
        log.info("dataset %s: json_schema: sample reads datasets of JSON Lines only; its JSON paths are read "
                 "with Spark's schema inference, beside its other paths", config.name)
        config = read_as
    frames = []
    limit = config.json_max_string_length or JSON_MAX_STRING_LENGTH
    for index, path in enumerate(config.paths):
        fmt = _format_of(spark, path, config.format, config.name)
        schema = schemas[index] if schemas else None
        if fmt == "json" and schema is None:  # infer once (unless declared), then read with the text as VARIANT
            schema = _json_schema(spark, path, config)
        frame = _read_one(spark, path, fmt, config, schema)
        if fmt == "json" and not [c for c in frame.columns if c not in (CORRUPT, RECORD)]:
            _require_json_lines(spark, config, path)  # no line parsed: say what the files are instead
        if len(config.paths) > 1:  # each path must have the text column itself: a union would fill in nulls
            _require_text(frame, config, path)
        frames.append(_tagged(frame, config, limit, index, path, fmt))
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other, allowMissingColumns=True)
    if not original_columns(df):  # what Spark infers from empty JSON files
        raise InputError(f"dataset {config.name}: {', '.join(config.paths)} has no documents; check the paths")
    text = _resolve_text(df, config)
    if config.id_col:
        _require_id_type(require_column(df, config, config.id_col, "id", "id_col"), config)
        ident = F.col(config.id_col)
    else:
        # A line read whole is its own JSON: its id depends on no other line's types.
        row = (F.to_json(F.col(RECORD)) if RECORD in df.columns
               else F.to_json(F.struct(*[F.col(f"`{c}`") for c in original_columns(df)])))
        ident = F.substring(F.sha2(F.concat_ws("\u0000", F.col("__dsir_source"), row), 256), 1, 32)
    kept = [F.col(f"`{c}`") for c in df.columns if c != "__dsir_source"]
    return df.select(*kept, ident.alias("__dsir_id"), text.alias("__dsir_text"))


def documents(df: DataFrame) -> DataFrame:
    """(id, text) of the documents of a frame from ``read_dataset``: lines the reader could not parse
    are not documents (see ``rows``)."""
    return rows(df).where(F.col(BAD) == F.lit(GOOD)).select(ID, TEXT)


def rows(df: DataFrame, *extra: Column) -> DataFrame:
    """(id, text, bad) of every row of a frame from ``read_dataset``, ``bad`` one of GOOD, MALFORMED,
    TOO_LONG, so that one pass can count the bad lines beside the documents; ``extra`` columns too."""
    return df.select(F.col("__dsir_id").alias(ID), F.col("__dsir_text").alias(TEXT), F.col("__dsir_bad").alias(BAD),
                     *extra)


def good_rows(df: DataFrame) -> DataFrame:
    """The rows of a frame from ``read_dataset`` that are documents, with all their columns."""
    return df.where(F.col("__dsir_bad") == F.lit(GOOD))


def first_bad_file(df: DataFrame) -> tuple[str, int] | None:
    """(file, reason code) of a bad line of a frame from ``read_dataset``, or None."""
    # The same columns as the counting pass: Spark's JSON reader only parses (and fails on) what a query reads.
    row = df.where(F.col("__dsir_bad") != F.lit(GOOD)).select(
        "__dsir_file", "__dsir_bad", "__dsir_id", F.length("__dsir_text")).first()
    return None if row is None else (row["__dsir_file"], int(row["__dsir_bad"]))


def files_without_text(df: DataFrame, config: DatasetConfig, limit: int = 20) -> list[str]:
    """Files of a dataset that lack its text column. Spark reads a Parquet folder or glob with one file's
    schema, so another file's missing column reads as null texts. Files whose every text is null (at most
    ``limit``, one small pass over file names and text nullness) have their own schema read: a missing
    column is told apart from real null texts. JSON and tables need no check (see ``_tagged``)."""
    if config.format in ("json", "table") or all(_format_by_suffix(p) == "json" for p in config.paths):
        return []
    suspects = (df.groupBy("__dsir_file").agg(F.count("__dsir_text").alias("texts"))
                .where(F.col("texts") == 0).select("__dsir_file").limit(limit).collect())
    spark = df.sparkSession
    tables = {p.removeprefix(TABLE_PREFIX) for p in config.paths if p.startswith(TABLE_PREFIX)}
    missing = []
    for row in suspects:
        path = row["__dsir_file"]
        if _format_by_suffix(path) == "json" or path in tables:
            continue  # a JSON file's missing fields are bad records; a table has one schema
        if _field_type(_read_one(spark, path, "parquet", config).schema, config.text_col) is None:
            missing.append(path)
    return missing


def dataset_of(file: str, configs: Sequence[DatasetConfig]) -> DatasetConfig:
    """The dataset among ``configs`` whose paths hold ``file`` (a file URI from Spark); the first if unsure."""
    plain = re.sub(r"^file:/+", "/", file)
    for config in configs:
        for path in config.paths:
            local = os.path.abspath(path.removeprefix("file:")) if "://" not in path else path
            if plain.startswith(local.rstrip("*")) or fnmatch.fnmatch(plain, local) or file.startswith(path):
                return config
    return configs[0]


def plain_text_bytes(spark: SparkSession, config: DatasetConfig) -> int | None:
    """The bytes of a dataset's files when all are uncompressed JSON Lines (which bound its characters
    of text, and so its tokens), from the run's listing; None for other formats."""
    total = 0
    for path in config.paths:
        if path.startswith(TABLE_PREFIX) or config.format not in ("auto", "json"):
            return None
        try:
            files = list_files(spark, path)
        except AnalysisException:
            return None
        if not files or any(_format_by_suffix(name) != "json" or name.lower().endswith(_COMPRESSION)
                            for name, _, _ in files):
            return None
        total += sum(size for _, size, _ in files)
    return total


def original_columns(df: DataFrame) -> list[str]:
    return [c for c in df.columns if not c.startswith("__dsir_")]


RAW_ID_ADVICE = ("give an id_col that is unique per document, or deduplicate the raw data (rows that are identical "
                 "in one file get the same generated id)")
SCORES_ID_ADVICE = "scores hold one row per raw document: deduplicate them by id"


def id_problem(where: str, null_ids: int, duplicated: int, examples: Sequence[tuple[object, int]],
               advice: str = RAW_ID_ADVICE) -> str | None:
    """The message for ids that are null or not unique (``examples``: a few (id, occurrences)), or None."""
    if null_ids:
        fix = "give an id_col without nulls, or leave id_col unset to have ids derived from the rows"
        return f"{where}: {null_ids:,} documents have a null id; {fix if advice == RAW_ID_ADVICE else advice}"
    if not duplicated:
        return None
    shown = ", ".join(f"{i!r} ({n}x)" for i, n in examples)
    return f"{where}: {duplicated:,} document ids occur more than once, e.g. {shown}; {advice}"


def check_ids(scored: DataFrame, where: str, advice: str = RAW_ID_ADVICE) -> None:
    """Fails on null or duplicate ``id`` values, naming a few: every document needs its own id."""
    counted = scored.groupBy(ID).count().where(F.col(ID).isNull() | (F.col("count") > 1))
    bad = counted.orderBy(F.desc("count"), ID).limit(6).collect()
    if not bad:
        return
    nulls = sum(r["count"] for r in bad if r[ID] is None)
    repeated = [(r[ID], r["count"]) for r in bad if r[ID] is not None][:5]
    duplicated = len(repeated) if len(repeated) < 5 else counted.where(F.col(ID).isNotNull()).count()
    raise InputError(id_problem(where, nulls, duplicated, repeated, advice))


def id_source(config: DatasetConfig) -> str:
    """Where a dataset's ids come from, as messages name it."""
    return f"id_col {config.id_col!r}" if config.id_col else "generated ids"



def require_rows(df: DataFrame, what: str) -> None:
    """Fails if a dataset has no rows (a cheap check: it reads at most one row)."""
    if not df.limit(1).collect():
        raise InputError(f"{what} has no documents; check its paths and filters")


# ---------------------------------------------------------------------------------------------- tables


def output_table(location: str | None) -> str | None:
    """The table name of a ``table:<name>`` output location, else None."""
    return location[len(TABLE_PREFIX):] if location and location.startswith(TABLE_PREFIX) else None


def table_exists(spark: SparkSession, name: str, setting: str) -> bool:
    """Whether output table ``name`` exists; fails in one line when its catalog or schema does not."""
    parts = table_name_parts(name, setting)
    namespace = ".".join(parts[:-1])
    try:
        if namespace and not spark.catalog.databaseExists(namespace):
            raise InputError(f"{setting}: the schema {namespace} of table {name} does not exist; create it "
                             f"(CREATE SCHEMA {namespace}) or name a table in an existing schema")
        return spark.catalog.tableExists(name)
    except AnalysisException as exc:
        raise InputError(f"{setting}: cannot use table {name} ({str(exc).splitlines()[0]}); check its catalog "
                         "and schema") from exc


def require_writable_table(spark: SparkSession, name: str, mode: str, setting: str) -> None:
    """Fails before any work when table ``name`` cannot be written: a missing catalog or schema, or an
    existing table that mode ``error`` must not replace."""
    if table_exists(spark, name, setting) and mode != "overwrite":
        raise InputError(f"{setting}: table {name} already exists; drop it, name another, or set "
                         "table_mode: overwrite to replace it")


def write_table(frame: DataFrame, name: str, mode: str, setting: str) -> None:
    """Saves ``frame`` as table ``name``; mode ``error`` never replaces an existing table."""
    try:
        frame.write.mode("overwrite" if mode == "overwrite" else "error").saveAsTable(name)
    except AnalysisException as exc:
        if "ALREADY_EXISTS" in str(exc):
            raise InputError(f"{setting}: table {name} already exists; drop it, name another, or set "
                             "table_mode: overwrite to replace it") from exc
        raise
