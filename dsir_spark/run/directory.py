"""The run directory: where each stage's output lives, what settings it depends on, and its record.

    <run_dir>/counts/<dataset>/   Parquet (bucket, count), one table per dataset, + <dataset>.json
    <run_dir>/model/              log_diff/ (Parquet) + model.json
    <run_dir>/scores/             Parquet (id, num_tokens, log_weight[_t])
    <run_dir>/selection/, output/ written by the resample stage
    <run_dir>/report/             report.json, report.md, figures

``<stage_dir>/_dsir/stage.json`` holds the stage's fingerprint (a hash of the settings and inputs it
depends on, chained through earlier stages), versions, rows in and out and seconds. A stage folder
without a record whose status is "done" is never taken for finished output: Spark's overwrite of the
stage's data removes an old record before anything new is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from typing import Any

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from dsir_spark.config import (
    TABLE_PREFIX,
    ChunkingConfig,
    ConfigError,
    DatasetConfig,
    FeatureConfig,
    FitConfig,
    ResampleConfig,
    RunConfig,
    ScoreConfig,
    resolved_location,
)
from dsir_spark.estimators.base import read_header
from dsir_spark.featurizer.counts import BucketCounts, dense_counts
from dsir_spark.selection.shards import MANIFEST, ShardError, read_manifest
from dsir_spark.storage.compaction import compacted, should_compact
from dsir_spark.storage.io import json_schemas, list_files, one_listing, output_table, read_dataset, read_once
from dsir_spark.storage.io import table_exists as catalog_table_exists
from dsir_spark.storage.records import (
    NeedsSession,
    direct_path,
    local_path,
    overwrite,
    read_json,
    read_table,
    table_exists,
    write_json,
    write_table,
)

log = logging.getLogger("dsir_spark")

STAGES = ("count", "fit", "score", "resample", "report")
STAGE_FOLDERS = {"count": "counts", "fit": "model", "score": "scores", "resample": "selection", "report": "report"}
RECORD = "_dsir/stage.json"  # under "_": Parquet readers of the stage folder skip it
# What the resample stage leaves in its output folder to know it again (readers skip "_" folders).
OUTPUT_MARK = "_dsir/output.json"


class StageOrderError(RuntimeError):
    """A stage's input (the previous stage's output) is missing or came from other settings."""


class RunDirError(RuntimeError):
    """The run directory cannot be written."""


class OutputConflict(ConfigError):
    """resample.out_dir holds data that this run did not write: emptying it would lose that data."""


# ---------------------------------------------------------------------------------------------- layout


def run_stages(config: RunConfig) -> tuple[str, ...]:
    """The stages ``dsir-spark run`` runs, in order: scores from elsewhere (resample.scores) replace the
    score stage; a model from elsewhere (fit.model) the fit stage, and the count stage too when the report
    (which needs this run's counts) is off."""
    skipped = {"score"} if config.resample.scores else set()
    if config.fit.model:
        skipped |= {"fit"} if config.report.enabled else {"fit", "count"}
    return tuple(s for s in STAGES if s not in skipped)


def model_path(config: RunConfig) -> str:
    """Where the run's model is: fit.model (fitted by another run), else this run's fit stage output."""
    return config.fit.model or stage_dir(config, "fit")


def require_model(spark: SparkSession, config: RunConfig) -> dict[str, Any]:
    """fit.model's model.json (a model from another run), or a ConfigError naming the setting."""
    try:
        meta, _ = read_header(spark, config.fit.model)
    except FileNotFoundError as exc:
        raise ConfigError(f"fit.model: no complete model at {config.fit.model} (no model.json); give the model "
                          "folder of a run whose fit stage finished (its <run_dir>/model)") from exc
    return meta


def model_identity(config: RunConfig, spark: SparkSession | None = None) -> dict[str, Any] | None:
    """What a model from elsewhere is, for the fingerprints: its path and the sha256 of its model.json
    (read through Spark where it is remote): a model refitted in place makes the stages after it stale.
    Without a session only a local model.json can be read (``NeedsSession`` otherwise)."""
    if not config.fit.model:
        return None
    path = f"{config.fit.model.rstrip('/')}/model.json"
    meta = read_once(path, lambda: read_json(spark, path))  # a run takes its inputs as they were at its start
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8")).hexdigest() if meta else None
    return {"path": config.fit.model, "model_json_sha256": digest}


def stage_dir(config: RunConfig, stage: str) -> str:
    return f"{config.run_dir.rstrip('/')}/{STAGE_FOLDERS[stage]}"


def counts_path(config: RunConfig, dataset: DatasetConfig) -> str:
    return f"{stage_dir(config, 'count')}/{dataset.name}"


def default_out_dir(config: RunConfig) -> str:
    return config.resample.out_dir or f"{config.run_dir.rstrip('/')}/output"


def open_dataset(spark: SparkSession, config: RunConfig, dataset: DatasetConfig, refresh: bool = False) -> DataFrame:
    """``io.read_dataset`` with the JSON schemas inferred once per run directory and dataset settings,
    stored in ``<run_dir>/_dsir/schemas/<dataset>``: later stages and reruns read without inferring.
    ``refresh`` (the count stage, when it runs) infers again unless the dataset's files are those the
    stored schemas were inferred from (same paths, sizes and modification times). A dataset of many
    small files is read from its snapshot in ``<run_dir>/_dsir/compacted/<dataset>`` (see compaction).
    Within a run (``io.one_listing``) its files are listed once and the dataset is opened once: every
    stage reuses the frame, a plan whose making costs the driver about a second of Spark's analysis
    (``refresh`` opens it again, once per run)."""
    key = json.dumps([id(spark), config.run_dir, asdict(dataset)], sort_keys=True, default=str)
    with one_listing() as seen:
        if key not in seen.frames or (refresh and key not in seen.refreshed):
            seen.frames[key] = _open_dataset(spark, config, dataset, refresh)
        if refresh:
            seen.refreshed.add(key)
        return seen.frames[key]


def _open_dataset(spark: SparkSession, config: RunConfig, dataset: DatasetConfig, refresh: bool) -> DataFrame:
    path = f"{config.run_dir.rstrip('/')}/_dsir/schemas/{dataset.name}"
    settings = json.loads(json.dumps(_dataset_settings(dataset)))
    stored = read_json(spark, path)
    files = _files_fingerprint(spark, dataset) if refresh else None
    if stored is not None and stored.get("dataset") == settings and (not refresh or stored.get("files") == files):
        schemas = stored["schemas"]
    else:
        schemas = json_schemas(spark, dataset)
        if any(schemas):
            files = files or _files_fingerprint(spark, dataset)
            write_json(spark, path, {"dataset": settings, "schemas": schemas, "files": files})
    frame = read_dataset(spark, dataset, schemas)
    listing = _dataset_files(spark, dataset)
    if not should_compact(dataset.compact, listing):
        return frame
    folder = f"{config.run_dir.rstrip('/')}/_dsir/compacted/{dataset.name}"
    return compacted(spark, folder, frame, {"dataset": settings}, listing)


def _dataset_files(spark: SparkSession, dataset: DatasetConfig) -> list[tuple[str, int, int]] | None:
    """Every file of a dataset from the run's listing, or None when a path is a table."""
    if any(path.startswith(TABLE_PREFIX) for path in dataset.paths):
        return None
    return [file for path in dataset.paths for file in list_files(spark, path)]


def _folder_entries(spark: SparkSession, folder: str) -> list[str] | None:
    """The names in ``folder`` (a file: itself), or None when nothing is there."""
    local = direct_path(spark, folder)
    if local is not None:
        if os.path.isdir(local):
            return os.listdir(local)
        return [os.path.basename(local)] if os.path.exists(local) else None
    try:
        return [name for name, _, _ in list_files(spark, folder)] or None
    except AnalysisException:  # a path that does not exist
        return None


def require_own_output(spark: SparkSession, config: RunConfig) -> None:
    """Fails before any work when the resample stage would empty a folder holding something it did not
    write: resample.out_dir must be absent, empty, or an earlier output of this run (its OUTPUT_MARK names
    this run directory), unless resample.overwrite says to empty it anyway. The default out_dir, inside
    the run directory, is the run's own."""
    out_dir = config.resample.out_dir
    if out_dir is None or out_dir.startswith(TABLE_PREFIX) or config.resample.overwrite:
        return
    entries = _folder_entries(spark, out_dir)
    if not entries:
        return
    mark = read_json(spark, f"{out_dir.rstrip('/')}/{OUTPUT_MARK}") or _shards_mark(out_dir, entries)
    if mark is not None and mark.get("run_dir") == resolved_location(config.run_dir):
        return
    whose = (f"the output of another run ({mark.get('run_dir')})" if mark is not None
             else f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} dsir-spark did not write "
             f"(e.g. {sorted(entries)[0]})")
    raise OutputConflict(
        f"resample.out_dir: {out_dir} holds {whose}, and the resample stage empties its output folder; choose "
        "an empty or new folder, or set resample.overwrite: true to replace what is there"
    )


def _shards_mark(out_dir: str, entries: list[str]) -> dict[str, Any] | None:
    """Shards keep their folder free of anything but shards: their manifest names the run directory."""
    if MANIFEST not in entries:
        return None
    try:
        return read_manifest(out_dir)
    except ShardError:
        return None


def mark_output(spark: SparkSession, config: RunConfig) -> None:
    """Marks the output folder as this run's (see require_own_output; shards: their manifest)."""
    out_dir = default_out_dir(config)
    if not out_dir.startswith(TABLE_PREFIX):
        write_json(spark, f"{out_dir.rstrip('/')}/{OUTPUT_MARK}", {"run_dir": resolved_location(config.run_dir)})


def _listed_folder(config: RunConfig, stage: str) -> tuple[str, str] | None:
    """What ``stage`` calls the folder whose files its record lists, and where it is: the scores, whose
    loss would silently shrink what later stages read whole, and the output users read; None for other
    stages and a ``table:`` output."""
    if stage == "score":
        return "scores", stage_dir(config, "score")
    out_dir = default_out_dir(config)
    return ("output", out_dir) if stage == "resample" and not out_dir.startswith(TABLE_PREFIX) else None


def stage_files(spark: SparkSession | None, config: RunConfig, stage: str) -> list[list[Any]] | None:
    """The files (name, bytes) of the folder ``stage`` lists in its record (the score stage's scores, the
    resample stage's output) as they are now, hidden and ``_`` files aside; None for other stages and a
    ``table:`` output. Without a session only a local folder can be listed (``NeedsSession``)."""
    listed = _listed_folder(config, stage)
    if listed is None:
        return None
    _, folder = listed
    local = local_path(folder) if spark is None else direct_path(spark, folder)
    if local is not None and not [n for n in (os.listdir(local) if os.path.isdir(local) else [])
                                  if not n.startswith(("_", "."))]:
        return []  # no folder, or nothing in it (which Spark's listing would not say without a job)
    with one_listing(fresh=True):  # what is there now, not what the run listed when it began
        try:
            files = list_files(spark, folder)
        except AnalysisException:  # no such folder
            files = []
    # The report adds its KL reduction to a shard manifest afterwards: the manifest counts by its name.
    named = ((path.rsplit("/", 1)[-1], size) for path, size, _ in files)
    return sorted([name, None if name == MANIFEST else size] for name, size in named)


def files_problem(spark: SparkSession | None, config: RunConfig, stage: str, record: dict[str, Any]) -> str | None:
    """Why the files a stage's record lists (``stage_files``) are no longer those it wrote (the folder
    gone, files missing, added or changed in size), or None; of a record that lists none (other stages,
    older versions), only whether the folder is there. The count and fit stages: whether every dataset's
    counts, and the model, are there (later stages and reruns read them); tables written (score.table, a
    ``table:`` out_dir): whether they are there."""
    if stage == "count":
        gone = [d.name for d in (*config.targets, config.raw) if not table_exists(spark, counts_path(config, d))]
        return f"its counts of {', '.join(gone)} in {stage_dir(config, 'count')} are gone" if gone else None
    if stage == "fit":
        model = stage_dir(config, "fit")
        return None if read_json(spark, f"{model}/model.json") is not None else f"its model {model} is gone"
    table, setting = ((config.score.table, "score.table") if stage == "score"
                      else (output_table(config.resample.out_dir), "resample.out_dir") if stage == "resample"
                      else (None, None))
    if table is not None:  # a table the stage wrote: there, or not (its rows are Spark's to keep)
        if spark is None:
            raise NeedsSession(f"table {table} can only be looked up through Spark")
        if not catalog_table_exists(spark, table, setting):
            return f"its table {table} ({setting}) is gone"
    recorded, now = record.get("files"), stage_files(spark, config, stage)
    if now is None or now == recorded or (recorded is None and now):
        return None
    noun, folder = _listed_folder(config, stage)
    what = f"its {noun} {folder}"
    if not now:
        return f"{what} are gone" if stage == "score" else f"{what} is gone"
    before, after = dict(map(tuple, recorded)), dict(map(tuple, now))
    changed = sum(before.get(name, -1) != after.get(name, -1) for name in before.keys() | after.keys())
    return f"{what} changed since ({changed} file{'s' if changed > 1 else ''} missing, added or of another size)"


def invalidate_outputs(spark: SparkSession, config: RunConfig) -> None:
    """Makes the resample stage's published output and the report stop looking current: the output
    folder is emptied without a ``_SUCCESS`` marker, the report's record marked stale and its local files
    removed. (A ``table:`` output is replaced only when a new selection is complete.)"""
    out_dir = default_out_dir(config)
    local_out = None if out_dir.startswith(TABLE_PREFIX) else direct_path(spark, out_dir)
    if local_out is not None:  # an empty Parquet part and no marker, without a Spark job
        shutil.rmtree(local_out, ignore_errors=True)
        write_table(spark, out_dir, pd.DataFrame({"dsir_incomplete": pd.Series([], dtype="string")}))
    elif not out_dir.startswith(TABLE_PREFIX):
        empty = spark.createDataFrame([], "dsir_incomplete string")
        overwrite(empty).parquet(out_dir)
    mark_output(spark, config)
    report = stage_dir(config, "report")
    write_record(spark, report, {"stage": "report", "status": "stale"})
    local = local_path(report)
    if local is not None and os.path.isdir(local):
        for name in os.listdir(local):
            if name.startswith("report.") or name.endswith(".png"):
                os.remove(os.path.join(local, name))


def publish_folder(spark: SparkSession, staged: str, out_dir: str, fmt: str, marker: bool = True) -> None:
    """Makes the complete folder ``staged`` the output ``out_dir``: a rename where the driver reaches
    both (nothing is written twice), else a copy through Spark. The output, unlike a stage folder, gets
    Spark's ``_SUCCESS`` marker once it is complete (``marker``), for readers that wait for one."""
    source, target = direct_path(spark, staged), direct_path(spark, out_dir)
    if source is not None and target is not None:
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        os.replace(source, target)
        if marker:
            open(os.path.join(target, "_SUCCESS"), "w").close()
        return
    if fmt == "json":  # line by line, exactly as staged
        spark.read.text(staged).write.mode("overwrite").text(out_dir)
    else:
        spark.read.parquet(staged).write.mode("overwrite").parquet(out_dir)


# ---------------------------------------------------------------------------------------------- settings


def _listing_entries(spark: SparkSession, dataset: DatasetConfig) -> list[Any]:
    """Each path of a dataset with its files (path, size, modification time); tables by name."""
    entries: list[Any] = []
    for path in dataset.paths:
        if path.startswith(TABLE_PREFIX):
            entries.append([dataset.name, path])
            continue
        try:
            entries.append([dataset.name, path, list_files(spark, path)])
        except AnalysisException:  # a missing path: the reader says so, with its own message
            entries.append([dataset.name, path, None])
    return entries


def _files_fingerprint(spark: SparkSession, dataset: DatasetConfig) -> str:
    return hashlib.sha256(json.dumps(_listing_entries(spark, dataset)).encode()).hexdigest()[:16]


def input_fingerprint(spark: SparkSession, config: RunConfig) -> str:
    """A hash of every input file's path, size and modification time, from the run's one listing (no
    data read); tables count by name. Data changed in place changes it."""
    entries = [entry for dataset in (config.raw, *config.targets) for entry in _listing_entries(spark, dataset)]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def dataset_fingerprint(spark: SparkSession, config: RunConfig, dataset: DatasetConfig, raw: bool) -> str:
    """What one dataset's bucket counts depend on: its files (paths, sizes, modification times), its
    reader settings and the features; for raw also the fit budget and sample seed. The count stage
    counts again only the datasets whose fingerprint changed."""
    key: dict[str, Any] = {"files": _files_fingerprint(spark, dataset), "dataset": _dataset_settings(dataset),
                           "features": asdict(config.features)}
    if raw:
        key.update(num_tokens_to_fit=config.fit.num_tokens_to_fit, sample_seed=config.fit.sample_seed)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dataset_settings(dataset: DatasetConfig) -> dict[str, Any]:
    """A dataset's settings that its rows depend on (``compact`` only changes where they are read from)."""
    return {k: v for k, v in asdict(dataset).items() if k != "compact"}


def _without_defaults(settings: dict[str, Any], default: Any, newer: tuple[str, ...]) -> dict[str, Any]:
    """``settings`` without the ``newer`` keys that hold their default: records made before they existed
    stay valid."""
    return {k: v for k, v in settings.items() if k not in newer or v != getattr(default, k)}


# Fit settings added after records existed, likewise.
_NEWER_FIT = ("estimator", "negatives", "positives", "regularization", "held_out", "model")
# Resample settings added after records existed: left out while they hold their default.
_NEWER_RESAMPLE = ("num_tokens_to_sample", "temperature", "shards", "group_col", "max_share", "group_caps")


def tokenizer_file(spark: SparkSession | None, config: RunConfig) -> list[list[Any]] | None:
    """tokens.tokenizer's (path, bytes, modification time), from the run's one listing (None: no
    tokenizer). Without a session only a local file can be listed (``NeedsSession`` otherwise)."""
    path = config.tokens.tokenizer
    return None if path is None else [list(entry) for entry in list_files(spark, path)]


def _read_or_recorded(read, recorded: dict[str, Any] | None, key: str) -> Any:
    """``read()``; where the driver has no session to read a remote file with (dsir-spark status), what
    the ``recorded`` settings hold under ``key``, as remote input files are taken to be unchanged."""
    try:
        return read()
    except NeedsSession:
        if recorded is None:
            raise
        return recorded.get(key)


def stage_settings(config: RunConfig, stage: str, inputs: str, spark: SparkSession | None = None,
                   recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a stage's output depends on, with the ``input_fingerprint``: each stage's include the
    earlier stages', so a change reruns everything after it. Plain JSON types, so a stored record
    compares equal. The resample and report stages count the trainer's tokens: theirs hold
    tokens.tokenizer's settings and file (a tokenizer replaced in place selects again). ``recorded``: a
    record's settings, standing in for the model and tokenizer files a driver without a session cannot
    read."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    fit = asdict(config.fit)
    settings: dict[str, Any] = {
        "inputs": inputs,
        "datasets": {"raw": _dataset_settings(config.raw), "targets": [_dataset_settings(t) for t in config.targets]},
        "features": _without_defaults(asdict(config.features), FeatureConfig(), ("tokenizer",)),
        "num_tokens_to_fit": fit["num_tokens_to_fit"],
        "sample_seed": fit["sample_seed"],
    }
    if stage in ("fit", "score", "resample"):
        settings["fit"] = _without_defaults(fit, FitConfig(), _NEWER_FIT)
    if stage in ("score", "resample", "report") and config.fit.model:
        settings["model"] = _read_or_recorded(lambda: model_identity(config, spark), recorded, "model")
    if stage in ("score", "resample", "report"):
        # Only what differs from the defaults: records written before a setting existed stay valid.
        for name, section, default in (("score", config.score, ScoreConfig()),
                                       ("chunking", config.chunking, ChunkingConfig())):
            if section != default:
                settings[name] = asdict(section)
    if stage in ("resample", "report"):
        # overwrite says what may be replaced, not what is selected
        resample = {k: v for k, v in asdict(config.resample).items() if k != "overwrite"}
        settings["resample"] = _without_defaults(resample, ResampleConfig(), _NEWER_RESAMPLE)
    if stage in ("resample", "report") and config.tokens.tokenizer is not None:
        settings["tokens"] = asdict(config.tokens)
        settings["tokenizer_file"] = _read_or_recorded(lambda: tokenizer_file(spark, config), recorded,
                                                       "tokenizer_file")
    if stage == "report":
        settings["report"] = asdict(config.report)
    return json.loads(json.dumps(settings))


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe_difference(old: Any, new: Any, path: str = "") -> str:
    """The first setting that differs between two nested settings dicts, as 'a.b: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return describe_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            if a != b:
                return describe_difference(a, b, f"{path}[{i}]")
    return f"{path}: {old!r} -> {new!r}"


# ---------------------------------------------------------------------------------------------- records


def read_record(spark: SparkSession, folder: str) -> dict[str, Any] | None:
    """The stage record in ``folder`` if the stage finished ("done"), else None."""
    record = read_json(spark, f"{folder}/{RECORD}")
    if record is None or record.get("status") != "done":
        return None
    return record


def write_record(spark: SparkSession, folder: str, record: dict[str, Any]) -> None:
    write_json(spark, f"{folder}/{RECORD}", record)


def complete_record(spark: SparkSession | None, config: RunConfig, stage: str, inputs: str) -> dict[str, Any] | None:
    """The record of ``stage`` if it finished with the settings of ``config`` on the same input files (and
    the files its record lists are still those it wrote, see files_problem)."""
    record = read_record(spark, stage_dir(config, stage))
    if record is None or record.get("fingerprint") != fingerprint(stage_settings(config, stage, inputs, spark)):
        return None
    problem = files_problem(spark, config, stage, record)
    if problem:
        if spark is not None:  # said once: a run first looks without a session (pipeline.complete_without_session)
            log.warning("stage %s: %s: run again", stage, problem)
        return None
    return record


def stage_complete(spark: SparkSession, config: RunConfig, stage: str, inputs: str) -> bool:
    """Whether ``stage`` finished with the settings of ``config`` on the same input files."""
    return complete_record(spark, config, stage, inputs) is not None


def require_stage(spark: SparkSession, config: RunConfig, stage: str, inputs: str) -> dict[str, Any]:
    """Fails unless ``stage`` completed with the settings of ``config`` on the same input files (its
    output is our input); returns its record."""
    folder = stage_dir(config, stage)
    record = read_record(spark, folder)
    if record is None:
        raise StageOrderError(f"the {stage} stage has no complete output in {folder}; run it first")
    expected = stage_settings(config, stage, inputs, spark)
    if record["fingerprint"] != fingerprint(expected):
        if record["settings"].get("inputs") != inputs:
            raise StageOrderError(
                f"the input files changed since the {stage} stage ran (files added, removed or modified), so its "
                "output and every stage's from count on are stale: run dsir-spark run, which redoes them in order"
            )
        difference = describe_difference(record["settings"], expected)
        raise StageOrderError(
            f"{folder} was made with other settings ({difference}); "
            f"rerun the {stage} stage or use the run directory that matches"
        )
    return record


# ---------------------------------------------------------------------------------------------- counts


def write_counts(spark: SparkSession, path: str, counts: BucketCounts, extra: dict[str, Any]) -> None:
    """A dataset's counts and then its record: the record goes first, so that counts interrupted while
    being rewritten are never taken for those of its key (see dataset_fingerprint)."""
    write_json(spark, f"{path}.json", {"status": "writing"})
    write_table(spark, path, counts.to_pandas())
    write_json(spark, f"{path}.json", {**counts.stats(), **extra})


def load_counts(spark: SparkSession, path: str, num_buckets: int) -> BucketCounts:
    stats = read_json(spark, f"{path}.json")
    if stats is None:
        raise StageOrderError(f"no bucket counts at {path}; run the count stage first")
    table = read_table(spark, path)
    if table is None:
        raise StageOrderError(f"no bucket counts at {path}; run the count stage first")
    counts = dense_counts(table["bucket"].to_numpy(), table["count"].to_numpy(), num_buckets)
    return BucketCounts(counts, stats["documents"], stats["tokens"], stats["null_texts"])
