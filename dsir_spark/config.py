"""Run configuration: frozen dataclasses that mirror conf/*.yaml field for field.

Every dataclass validates itself in ``__post_init__`` and says what to change when a value is wrong.
``load_config`` reads YAML, rejects unknown keys and wrong types by their dotted name, and applies
command-line overrides such as ``resample.seed=7``.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import math
import os
import posixpath
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

import yaml

HASH_MODES = ("sha256", "xxhash64")
INPUT_FORMATS = ("auto", "parquet", "json", "table")
OUTPUT_FORMATS = ("parquet", "json")
SHARD_ORDERS = ("random", "key")
SHARD_FORMATS = ("megatron",)  # besides resample.output_format's: token files
SHARD_COMPRESSIONS = ("zstd", "gzip", "none")
TABLE_MODES = ("error", "overwrite")
BAD_RECORD_MODES = ("fail", "skip")
LENGTH_CORRECTIONS = ("none", "poisson", "mean")
TOKENIZERS = ("wordpunct", "wordpunct_regex", "wordpunct_cjk")
ESTIMATORS = ("ngram_ratio", "logistic")
COMPACT_MODES = ("auto", "always", "never")
TABLE_PREFIX = "table:"
# One part of a table name: a plain identifier or a `back-quoted` one.
_NAME_PART = re.compile(r"[A-Za-z0-9_]+|`[^`]+`")


class ConfigError(ValueError):
    """A setting is missing, unknown, of the wrong type or out of range."""


def _require_long(value: int, setting: str) -> None:
    """Seeds are hashed as Spark longs: a value outside them cannot be one."""
    if not -(2**63) <= value < 2**63:
        raise ConfigError(f"{setting}={value}; a seed must be a 64-bit integer (from -2**63 to 2**63 - 1)")


def home_expanded(path: str | None) -> str | None:
    """A path with a leading ``~`` (or ``~user``) made the home folder, as a shell would: YAML does not,
    and Spark would create a folder named ``~`` where the driver's Python reads the home folder."""
    return os.path.expanduser(path) if isinstance(path, str) and path.startswith("~") else path


def table_name_parts(name: str, setting: str) -> list[str]:
    """The 1-3 parts of a catalog table name (``table``, ``schema.table``, ``catalog.schema.table``)."""
    parts, rest = [], name.strip()
    while True:
        match = _NAME_PART.match(rest)
        if match is None:  # nothing, or nothing after a dot
            rest = rest or "."
            break
        parts.append(match.group(0))
        rest = rest[match.end():]
        if not rest.startswith("."):
            break
        rest = rest[1:]
    if rest or not 1 <= len(parts) <= 3:
        raise ConfigError(
            f"{setting}: {name!r} is not a valid table name; use table, schema.table or catalog.schema.table "
            "(letters, digits and _, or `back-quoted` parts)"
        )
    return parts


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset lives and which columns hold its text and ids.

    ``paths``: files, folders or globs (Parquet, JSON Lines, .gz), or ``table:<name>`` for a catalog table.
    ``text_col`` may be a nested field (``metadata.text``). Without ``id_col`` an id is derived from the
    row's content (see ``dsir_spark.storage.io``).
    """

    paths: tuple[str, ...]
    text_col: str = "text"
    id_col: str | None = None
    format: str = "auto"
    name: str | None = None
    on_bad_records: str = "fail"
    json_max_string_length: int | None = None
    # sample: columns from the first lines, each line read whole | null: Spark's inference | Spark DDL
    json_schema: str | None = "sample"
    compact: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.paths, str):
            object.__setattr__(self, "paths", (self.paths,))
        object.__setattr__(self, "paths", tuple(home_expanded(p) for p in self.paths))
        if not self.paths:
            raise ConfigError(f"dataset {self.name or ''!s}: 'paths' is empty; give at least one path or table")
        if self.format not in INPUT_FORMATS:
            raise ConfigError(f"dataset {self.name}: format={self.format!r}; use one of {INPUT_FORMATS}")
        if not self.text_col:
            raise ConfigError(f"dataset {self.name}: text_col is empty; name the column holding the text")
        if self.on_bad_records not in BAD_RECORD_MODES:
            raise ConfigError(f"dataset {self.name}: on_bad_records={self.on_bad_records!r}; use one of "
                              f"{BAD_RECORD_MODES}")
        if self.json_max_string_length is not None and self.json_max_string_length < 1:
            raise ConfigError(f"dataset {self.name}: json_max_string_length={self.json_max_string_length}; "
                              "it must be a positive number of characters")
        if self.json_schema is not None and not (isinstance(self.json_schema, str) and self.json_schema.strip()):
            raise ConfigError(f"dataset {self.name}: json_schema={self.json_schema!r}; give the JSON files' columns "
                              "in Spark's DDL (e.g. 'id BIGINT, text STRING'), sample to take them from the first "
                              "lines, or null to have Spark infer them")
        if self.compact not in COMPACT_MODES:
            raise ConfigError(f"dataset {self.name}: compact={self.compact!r}; use one of {COMPACT_MODES}")
        for path in self.paths:
            if path.startswith(TABLE_PREFIX):
                table_name_parts(path[len(TABLE_PREFIX):], f"dataset {self.name}: path {path}")


@dataclass(frozen=True)
class FeatureConfig:
    """Hashed n-gram features, with the reference's defaults."""

    ngrams: int = 2
    num_buckets: int = 10000
    hash: str = "sha256"
    # wordpunct: Python's re, the reference as published; wordpunct_regex: the `regex` module, as NLTK >= 3.10
    tokenizer: str = "wordpunct"

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"features.tokenizer={self.tokenizer!r}; use one of {TOKENIZERS}")
        if self.ngrams < 1:
            raise ConfigError(f"features.ngrams={self.ngrams}; it must be >= 1 (1 = unigrams only)")
        if self.num_buckets < 1:
            raise ConfigError(f"features.num_buckets={self.num_buckets}; it must be >= 1 (default 10000)")
        if self.num_buckets > 2**31 - 1:
            raise ConfigError(f"features.num_buckets={self.num_buckets}; it must fit a 32-bit int (< 2**31)")
        if self.hash not in HASH_MODES:
            raise ConfigError(f"features.hash={self.hash!r}; use one of {HASH_MODES}")


@dataclass(frozen=True)
class FitConfig:
    """How the raw and target distributions are estimated."""

    num_tokens_to_fit: str | int = "auto"
    target_laplace_smoothing: float = 0.0
    separate_targets: bool = False
    target_proportions: tuple[float, ...] | None = None
    sample_seed: int = 0
    # ngram_ratio: the reference's naive-Bayes log ratio | logistic: a classifier on the same features
    # (see dsir_spark.estimators.classifier); the next four settings are the classifier's.
    estimator: str = "ngram_ratio"
    negatives: int = 20_000  # raw documents it is trained against (a seeded sample)
    positives: int = 20_000  # at most this many target documents per classifier (a seeded sample)
    regularization: float = 1e-2  # L2 strength on the mean class-balanced log loss
    held_out: float = 0.1  # share of the training documents kept out to measure AUC and log loss
    # A model fitted by another run (its <run_dir>/model): this run scores and selects with it; the fit
    # stage is skipped (and the count stage too when the report is off).
    model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", home_expanded(self.model))
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"fit.estimator={self.estimator!r}; use one of {ESTIMATORS}")
        for name in ("negatives", "positives"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fit.{name}={value!r}; use a positive number of documents")
        if not self.regularization >= 0:
            raise ConfigError(f"fit.regularization={self.regularization}; use a number >= 0 (e.g. 0.01)")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"fit.held_out={self.held_out}; use a share in [0, 1), e.g. 0.1")
        _require_long(self.sample_seed, "fit.sample_seed")
        n = self.num_tokens_to_fit
        if isinstance(n, bool) or not (n in ("auto", "all") or (isinstance(n, int) and n > 0)):
            raise ConfigError(f"fit.num_tokens_to_fit={n!r}; use 'auto', 'all' or a positive integer")
        if self.target_laplace_smoothing < 0:
            raise ConfigError(f"fit.target_laplace_smoothing={self.target_laplace_smoothing}; it must be >= 0")
        if self.target_proportions is not None:
            props = tuple(float(p) for p in self.target_proportions)
            if any(p < 0 for p in props) or sum(props) <= 0:
                raise ConfigError(f"fit.target_proportions={props}; use non-negative numbers with a positive sum")
            object.__setattr__(self, "target_proportions", props)


@dataclass(frozen=True)
class ShardConfig:
    """The selection as numbered shards a trainer reads (``00000.parquet`` ...) with a manifest.json."""

    max_file_bytes: int | None = None  # each file at most this many bytes (see dsir_spark.selection.shards), or ...
    num_files: int | None = None  # ... this many files of about equal bytes, or (megatron) ...
    max_tokens: int | None = None  # ... at most this many tokens per file
    order: str = "random"  # random: a seeded order, so each shard is a uniform sample | key: highest keys first
    compression: str = "zstd"  # zstd | gzip | none, for Parquet and JSON Lines alike
    format: str | None = None  # None: resample.output_format | megatron: .bin/.idx token files (tokens.tokenizer)

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.max_file_bytes, self.num_files, self.max_tokens)) != 1:
            raise ConfigError("resample.shards: set one of max_file_bytes (e.g. 268435456 for 256 MiB), num_files "
                              "and (format: megatron) max_tokens")
        if self.format is not None and self.format not in SHARD_FORMATS:
            raise ConfigError(f"resample.shards.format={self.format!r}; use one of {SHARD_FORMATS}, or leave it "
                              "out for resample.output_format")
        if self.max_tokens is not None and (self.format != "megatron" or self.max_tokens < 1):
            raise ConfigError(f"resample.shards.max_tokens={self.max_tokens}; it bounds token files: give a positive "
                              "number with format: megatron")
        if self.max_file_bytes is not None and self.max_file_bytes < 1024:
            raise ConfigError(f"resample.shards.max_file_bytes={self.max_file_bytes}; give at least 1024 bytes")
        if self.num_files is not None and self.num_files < 1:
            raise ConfigError(f"resample.shards.num_files={self.num_files}; it must be >= 1")
        if self.order not in SHARD_ORDERS:
            raise ConfigError(f"resample.shards.order={self.order!r}; use one of {SHARD_ORDERS}")
        if self.compression not in SHARD_COMPRESSIONS:
            raise ConfigError(f"resample.shards.compression={self.compression!r}; use one of {SHARD_COMPRESSIONS}")


@dataclass(frozen=True)
class GroupCap:
    """The largest share of the selection (its tokens with a token budget, else its documents) that the
    documents whose group_col is ``value`` may take."""

    value: str
    max_share: float

    def __post_init__(self) -> None:
        if not 0 <= self.max_share <= 1:
            raise ConfigError(f"resample.group_caps: max_share={self.max_share} for {self.value!r}; give 0 to 1")


@dataclass(frozen=True)
class ResampleConfig:
    """How many documents to select, and how."""

    num_to_sample: int | None = None  # this many documents, or (instead) ...
    num_tokens_to_sample: int | None = None  # ... the longest prefix of the key order within this many tokens
    # ... or every eligible document whose log weight is at least this (no noise): a threshold a later
    # snapshot can be filtered by, without a global top-k
    min_log_weight: float | None = None
    top_k: bool = False
    temperature: float = 1.0  # keys = log_weight / temperature + Gumbel noise
    seed: int = 0
    min_example_length: int = 100
    output_format: str = "parquet"
    out_dir: str | None = None
    add_dsir_columns: bool = True
    table_mode: str = "error"
    # out_dir may be emptied only when it is absent, empty or this run's own earlier output; true: any folder.
    overwrite: bool = False
    # Resample by another scores table (Parquet folder or table:<name>) with an id and a log-weight column.
    scores: str | None = None
    weight_col: str | None = None
    shards: ShardConfig | None = None  # write out_dir as numbered shards with a manifest
    # Quotas: no group (a raw column, e.g. metadata.pile_set_name) takes more than max_share of the
    # selection, or its own share in group_caps; documents of a full group are passed over.
    group_col: str | None = None
    max_share: float | None = None
    group_caps: tuple[GroupCap, ...] = ()

    def __post_init__(self) -> None:
        for name in ("out_dir", "scores"):
            object.__setattr__(self, name, home_expanded(getattr(self, name)))
        if (self.max_share is not None or self.group_caps) and not self.group_col:
            raise ConfigError("resample.max_share and resample.group_caps need resample.group_col: the column whose "
                              "values are the groups (e.g. metadata.pile_set_name)")
        if self.group_col and self.max_share is None and not self.group_caps:
            raise ConfigError(f"resample.group_col={self.group_col!r} without max_share or group_caps; set the share "
                              "no group may exceed")
        if self.max_share is not None and not 0 < self.max_share <= 1:
            raise ConfigError(f"resample.max_share={self.max_share}; give a share above 0 and at most 1")
        object.__setattr__(self, "group_caps", tuple(self.group_caps))
        if self.shards is not None and self.out_dir and self.out_dir.startswith(TABLE_PREFIX):
            raise ConfigError("resample.shards writes files, and resample.out_dir is a table; give a folder")
        files = self.shards.num_files if self.shards is not None else None
        if files is not None and self.num_to_sample is not None and 0 < self.num_to_sample < files:
            raise ConfigError(f"resample.shards.num_files={files} but resample.num_to_sample={self.num_to_sample}; "
                              "every file needs at least one document: lower num_files, or use max_file_bytes")
        if self.scores and self.scores.startswith(TABLE_PREFIX):
            table_name_parts(self.scores[len(TABLE_PREFIX):], "resample.scores")
        if self.weight_col is not None and not self.weight_col.strip():
            raise ConfigError("resample.weight_col is empty; name the scores' log-weight column, or leave it null")
        _require_long(self.seed, "resample.seed")
        if self.num_to_sample is not None and self.num_to_sample < 0:
            raise ConfigError(f"resample.num_to_sample={self.num_to_sample}; it must be >= 0")
        if self.num_tokens_to_sample is not None and self.num_tokens_to_sample < 0:
            raise ConfigError(f"resample.num_tokens_to_sample={self.num_tokens_to_sample}; it must be >= 0")
        given = [name for name in ("num_to_sample", "num_tokens_to_sample", "min_log_weight")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ConfigError(f"resample.{given[0]} and resample.{given[1]} are both set; a selection is a number of "
                              "documents, a token budget or a log-weight threshold: set one of them")
        if self.min_log_weight is not None and (self.group_col or self.shards is not None and
                                                self.shards.num_files is not None):
            raise ConfigError("resample.min_log_weight selects every document above a threshold: quotas "
                              "(group_col) and shards.num_files need a count or a budget; use num_to_sample")
        if not self.temperature > 0:
            raise ConfigError(f"resample.temperature={self.temperature}; it must be > 0 (1 = the reference's "
                              "sampling, below 1 sharper, above 1 flatter)")
        if self.min_example_length < 0:
            raise ConfigError(f"resample.min_example_length={self.min_example_length}; it must be >= 0")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"resample.output_format={self.output_format!r}; use one of {OUTPUT_FORMATS}")
        if self.table_mode not in TABLE_MODES:
            raise ConfigError(f"resample.table_mode={self.table_mode!r}; use one of {TABLE_MODES}")
        if self.out_dir and self.out_dir.startswith(TABLE_PREFIX):
            table_name_parts(self.out_dir[len(TABLE_PREFIX):], "resample.out_dir")


def require_sample_size(config: ResampleConfig) -> None:
    """How much to select must be said: there is no default, as a default that selects nothing (or some
    arbitrary amount) would run for nothing."""
    if config.num_to_sample is None and config.num_tokens_to_sample is None and config.min_log_weight is None:
        raise ConfigError("resample.num_to_sample is not set; set how many documents to select, e.g. "
                          "--set resample.num_to_sample=1000 (0 writes an empty selection), or a token budget "
                          "with resample.num_tokens_to_sample")


@dataclass(frozen=True)
class TokensConfig:
    """The trainer's tokens: with a tokenizer every token figure of the run (budgets, quotas, report,
    manifest) counts its tokens, and shards can be token files."""

    tokenizer: str | None = None  # a Hugging Face tokenizer.json (local, mounted or remote path)
    eos: bool | str = False  # one end-of-document token per document: true (the tokenizer's), or its text

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokenizer", home_expanded(self.tokenizer))
        if self.tokenizer is None and self.eos is not False:
            raise ConfigError("tokens.eos needs tokens.tokenizer: the tokenizer.json whose end-of-document token "
                              "ends each document")
        if isinstance(self.eos, str) and not self.eos:
            raise ConfigError("tokens.eos is empty; give the token's text (e.g. <|endoftext|>), true or false")


@dataclass(frozen=True)
class ChunkingConfig:
    """Raw documents split into equal-length chunks of wordpunct tokens before scoring (0 = off)."""

    tokens: int = 0
    min_tokens: int | None = None  # a shorter last chunk is kept with at least this many tokens

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ConfigError(f"chunking.tokens={self.tokens}; it must be >= 0 (0 = whole documents)")
        if self.min_tokens is not None and self.min_tokens < 0:
            raise ConfigError(f"chunking.min_tokens={self.min_tokens}; it must be >= 0")


@dataclass(frozen=True)
class ScoreConfig:
    """How documents are weighted, and where the scores go besides ``<run_dir>/scores``."""

    table: str | None = None
    table_mode: str = "error"
    length_correction: str = "none"

    def __post_init__(self) -> None:
        if self.length_correction not in LENGTH_CORRECTIONS:
            raise ConfigError(f"score.length_correction={self.length_correction!r}; use one of {LENGTH_CORRECTIONS}")
        if self.table_mode not in TABLE_MODES:
            raise ConfigError(f"score.table_mode={self.table_mode!r}; use one of {TABLE_MODES}")
        if self.table is not None:
            name = self.table.removeprefix(TABLE_PREFIX)
            table_name_parts(name, "score.table")
            object.__setattr__(self, "table", name)


@dataclass(frozen=True)
class ReportConfig:
    """The selection report: KL reduction, baselines, log weights, label shares."""

    enabled: bool = True
    label_col: str | None = None
    # Documents shown per group (top, random, boundary, passed over, raw) and target; 0: none.
    example_documents: int = 5

    def __post_init__(self) -> None:
        if self.example_documents < 0:
            raise ConfigError(f"report.example_documents={self.example_documents}; give documents per group "
                              "(default 5), or 0 for none")


@dataclass(frozen=True)
class RunConfig:
    """One DSIR run: inputs, settings, and the run directory that holds every stage's output."""

    run_dir: str
    raw: DatasetConfig
    targets: tuple[DatasetConfig, ...]
    features: FeatureConfig = field(default_factory=FeatureConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    # A run's lease on run_dir (see dsir_spark.run.lease) not refreshed for this long may be taken over.
    lease_timeout_seconds: float = 600.0
    # A progress line per stage this often where no terminal shows it in place (logs, notebooks); 0: none.
    progress_seconds: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", home_expanded(self.run_dir))
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.resample.min_log_weight is not None and self.fit.separate_targets:
            raise ConfigError("resample.min_log_weight is a threshold on one weight column; separate targets split "
                              "a count or a budget: use num_to_sample or num_tokens_to_sample")
        shards = self.resample.shards
        if shards is not None and shards.format == "megatron" and self.tokens.tokenizer is None:
            raise ConfigError("resample.shards.format: megatron writes token ids: set tokens.tokenizer to the "
                              "tokenizer.json the trainer uses")
        if not (math.isfinite(self.progress_seconds) and self.progress_seconds >= 0):
            raise ConfigError(f"progress_seconds={self.progress_seconds}; give seconds between progress lines "
                              "(default 30), or 0 for none")
        if self.lease_timeout_seconds <= 0:
            raise ConfigError(f"lease_timeout_seconds={self.lease_timeout_seconds}; it must be > 0 (default 600)")
        if not self.targets:
            raise ConfigError("targets is empty; give at least one target dataset")
        if not self.run_dir:
            raise ConfigError("run_dir is empty; give a folder (local, HDFS, s3://, dbfs:/ ...) for the outputs")
        if self.fit.separate_targets and self.resample.group_col:
            raise ConfigError("resample.group_col with fit.separate_targets: group quotas work with one weight "
                              "column; combine the targets, or select per target in separate runs")
        props = self.fit.target_proportions
        if props is not None and not self.fit.separate_targets:
            raise ConfigError("fit.target_proportions is set but fit.separate_targets is false: the proportions split "
                              "the selection across separate targets; set separate_targets: true, or remove them")
        if props is not None and len(props) != len(self.targets):
            raise ConfigError(
                f"fit.target_proportions has {len(props)} values for {len(self.targets)} targets; give one per target"
            )
        # Name datasets so that errors and the report can say which one is meant.
        if self.raw.name is None:
            object.__setattr__(self, "raw", dataclasses.replace(self.raw, name="raw"))
        named = tuple(
            t if t.name is not None else dataclasses.replace(t, name=f"target_{i}") for i, t in enumerate(self.targets)
        )
        object.__setattr__(self, "targets", named)

        _check_nesting(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


_GLOB = re.compile(r"[*?\[{]")
_DATA_SUFFIX = re.compile(r"\.(jsonl|json|ndjson|parquet|gz|bz2|zst|snappy)$", re.IGNORECASE)


def resolved_location(path: str) -> str:
    """A comparable form of a path: scheme kept, local paths absolute with symlinks resolved, ``..``
    and ``.`` folded, no trailing slash."""
    if path.startswith("file:"):
        path = "/" + path[len("file:"):].lstrip("/")
    if "://" in path:
        scheme, rest = path.split("://", 1)
        authority, _, tail = rest.partition("/")
        return f"{scheme.lower()}://{authority}{posixpath.normpath('/' + tail).rstrip('/')}"
    if path.startswith("dbfs:"):
        return "dbfs:" + posixpath.normpath("/" + path[len("dbfs:"):].lstrip("/"))
    return os.path.realpath(path)


def _input_folder(path: str) -> str | None:
    """The folder a dataset path reads from (a glob's fixed part), or None for a single file or a table."""
    if path.startswith(TABLE_PREFIX):
        return None
    glob = _GLOB.search(path)
    if glob:
        return resolved_location(path[: glob.start()].rsplit("/", 1)[0] or "/")
    return None if _DATA_SUFFIX.search(path) else resolved_location(path)


def _inside(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _readresolved_location(path: str) -> str:
    """Where an input path reads from: its folder (a glob's fixed part) or the file itself."""
    return _input_folder(path) or resolved_location(path)


def _check_nesting(config: RunConfig) -> None:
    """Refuses a run directory inside an input folder (Spark would read the run's files as documents)
    and an input inside the run directory (a rerun would overwrite it)."""
    run_dir = resolved_location(config.run_dir)
    for dataset in (config.raw, *config.targets):
        for path in dataset.paths:
            if path.startswith(TABLE_PREFIX):
                continue
            folder = _input_folder(path)
            if folder is not None and _inside(run_dir, folder):
                raise ConfigError(
                    f"run_dir {config.run_dir} is inside {path}, an input of dataset {dataset.name}: its files "
                    "would be read as documents; put run_dir outside the input folders"
                )
            if _inside(_readresolved_location(path), run_dir):
                raise ConfigError(
                    f"dataset {dataset.name}: {path} is inside run_dir {config.run_dir}, whose folders the stages "
                    "overwrite; keep inputs outside the run directory"
                )
    _check_outputs(config)


def _table_key(name: str) -> str:
    return ".".join(part.strip("`").lower() for part in table_name_parts(name, "table"))


def _check_outputs(config: RunConfig) -> None:
    """Refuses outputs that overlap what the run reads or keeps: resample.out_dir (a folder the resample
    stage empties) that is, holds or lies inside an input, the external scores or the run directory (but
    for its default place, <run_dir>/output), and output tables that are input tables."""
    out_dir, scores = config.resample.out_dir, config.resample.scores
    reads = [(f"an input of dataset {d.name}", p) for d in (config.raw, *config.targets) for p in d.paths]
    if scores:
        reads.append(("resample.scores", scores))
    outputs = [("score.table", TABLE_PREFIX + config.score.table)] if config.score.table else []
    if out_dir:
        outputs.append(("resample.out_dir", out_dir))
    for setting, output in outputs:
        if output.startswith(TABLE_PREFIX):
            for what, path in reads:
                if path.startswith(TABLE_PREFIX) and _table_key(path[len(TABLE_PREFIX):]) == _table_key(
                        output[len(TABLE_PREFIX):]):
                    raise ConfigError(f"{setting}: {output} is {path}, {what}; writing it would replace what the "
                                      "run reads: name another table")
            continue
        target = resolved_location(output)
        for what, path in reads:
            if path.startswith(TABLE_PREFIX):
                continue
            source = _readresolved_location(path)
            if _inside(target, source) or _inside(source, target):
                relation = "is" if target == source else "lies inside" if _inside(target, source) else "holds"
                raise ConfigError(f"{setting}: {output} {relation} {path}, {what}; the resample stage empties "
                                  "its output folder, which would delete that data: choose a folder apart from "
                                  "every input")
        run_dir = resolved_location(config.run_dir)
        relation = ("is" if target == run_dir else "holds" if _inside(run_dir, target)
                    else "lies inside" if _inside(target, run_dir) and target != f"{run_dir}/output" else None)
        if relation:
            raise ConfigError(f"{setting}: {output} {relation} run_dir {config.run_dir}, whose folders the stages "
                              f"write; use {config.run_dir.rstrip('/')}/output (the default) or a folder outside it")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- loading


_EXPONENT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")


def _exponent_form(value: Any) -> decimal.Decimal | None:
    """A number written with an exponent (``1e-6``, ``3E9``), which YAML 1.1 reads as a string; else None."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return decimal.Decimal(value.strip())
    return None


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to ``hint`` where that is lossless, else raise a ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not a valid value ({'; '.join(errors)})")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            if hint == tuple[str, ...] and isinstance(value, str):
                return (value,)
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_check_type(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        number = _exponent_form(value)
        if number is not None and number == int(number):  # 3e9 (YAML 1.1 reads it as a string)
            return int(number)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        number = _exponent_form(value)
        if number is not None:  # 1e-6 (YAML 1.1 reads it as a string)
            value = float(number)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {hint}")  # pragma: no cover


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        meant = f"did you mean {prefix}{close[0]}? " if close else ""
        raise ConfigError(f"unknown setting {prefix}{unknown[0]}; {meant}known settings here: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        hint = hints[name]
        if name == "targets":
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a list of datasets")
            kwargs[name] = tuple(_build(DatasetConfig, v, f"{path}[{i}]") for i, v in enumerate(value))
        else:
            kwargs[name] = _check_type(value, hint, path)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"missing setting {prefix}{missing[0]}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from plain data (as read from YAML)."""
    return _build(RunConfig, data, "")


class OverrideError(ConfigError):
    """A ``--set`` argument that cannot be applied; the message names it."""


def _override_path(key: str, item: str) -> list[str]:
    parts = key.strip().split(".")
    if not key.strip() or any(not p.strip() for p in parts):
        raise OverrideError(f"--set {item!r}: the setting name is empty or has an empty part; write section.key=value, "
                            "e.g. resample.seed=7 or targets.0.text_col=body")
    return [p.strip() for p in parts]


def _child(node: Any, part: str, item: str, path: str, create: bool) -> Any:
    """``node[part]`` for a mapping or (with a numeric part) a list, creating missing sections."""
    if isinstance(node, list):
        if not part.isdigit():
            raise OverrideError(f"--set {item!r}: {path} is a list; index it with a number, e.g. {path}.0")
        if int(part) >= len(node):
            entries = f"{len(node)} entr{'y' if len(node) == 1 else 'ies'}"
            raise OverrideError(f"--set {item!r}: {path} has {entries}, so indexes 0 to {len(node) - 1}; "
                                f"there is no {path}.{part}")
        return node[int(part)]
    if not isinstance(node, dict):
        raise OverrideError(f"--set {item!r}: {path} is a single value ({node!r}), not a section with settings")
    if create and not isinstance(node.get(part), (dict, list)):
        node[part] = {} if node.get(part) is None else node[part]
    return node.get(part)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides; values are parsed as YAML (``7``, ``true``, ``[a, b]``)."""
    data = _to_plain(data)
    for item in overrides:
        if "=" not in item:
            raise OverrideError(f"--set {item!r}: write it as section.key=value, e.g. resample.seed=7")
        key, raw_value = item.split("=", 1)
        parts = _override_path(key, item)
        try:
            value = yaml.safe_load(raw_value)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise OverrideError(f"--set {item!r}: the value is not valid YAML ({reason}); quote it") from exc
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, item, ".".join(parts[:depth]) or "the config", create=True)
        last, where = parts[-1], ".".join(parts[:-1]) or "the config"
        if isinstance(node, list):
            _child(node, last, item, where, create=False)  # checks the index
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise OverrideError(f"--set {item!r}: {where} is a single value ({node!r}), not a section with settings")
    return data


def _blamed_override(error: ConfigError, overrides: list[str]) -> str | None:
    """The ``--set`` argument an error is about: the last one whose setting, or a section of it, the
    message names (``targets.0.text_col`` appears in messages as ``targets[0].text_col``)."""
    message = str(error)
    for item in reversed(overrides):
        parts = item.split("=", 1)[0].strip().split(".")
        for depth in range(len(parts), 0, -1):
            name = parts[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1:depth])
            # the setting itself or below it; a section above it only when the message is about that section
            after = r"([.\[=:;, ]|$)" if depth == len(parts) else r"[:;]"
            if re.search(rf"(^|\s){re.escape(name)}{after}", message):
                return item
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the setting {key!r} is given twice in one "
                                  f"section (also at line {seen[key]}); keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_config_data(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{at}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    return data


def load_config(path: str, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file (a local path) and apply overrides."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    overrides = overrides or []
    data = apply_overrides(load_config_data(text, path), overrides)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        blamed = _blamed_override(exc, overrides)
        raise ConfigError(f"--set {blamed!r}: {exc}" if blamed else f"{path}: {exc}") from exc
