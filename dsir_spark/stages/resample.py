"""Resample stage: exactly ``num_to_sample`` scored documents by seeded Gumbel top-k (or the longest prefix of
the key order within ``num_tokens_to_sample`` tokens), written with all
their original columns."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from dsir_spark.columns import CHUNK, DOC_ID, GENERATED_ID, ID, NUM_TOKENS, TEXT
from dsir_spark.config import ResampleConfig, RunConfig, ShardConfig, require_sample_size, resolved_location
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.chunks import expand_chunks, is_chunked
from dsir_spark.featurizer.features import requested_implementation
from dsir_spark.featurizer.model_tokens import load_model_tokenizer, token_count
from dsir_spark.run.directory import (
    default_out_dir,
    fingerprint,
    input_fingerprint,
    invalidate_outputs,
    mark_output,
    model_path,
    open_dataset,
    publish_folder,
    require_own_output,
    require_stage,
    stage_complete,
    stage_dir,
    stage_files,
    stage_settings,
)
from dsir_spark.run.scores import open_scores, scores_location, weight_columns, with_groups
from dsir_spark.selection.model_budget import select_in_model_tokens
from dsir_spark.selection.report_documents import (
    SELECTED,
    ReportDocuments,
    join_held,
    report_documents,
    staged_columns,
)
from dsir_spark.selection.resampling import (
    KEY,
    Quota,
    ResampleError,
    check_selectable,
    require_budget_used,
    require_enough,
    select,
    select_above,
    selectable_sizes,
)
from dsir_spark.selection.shards import (
    ORDER,
    SHARD_TEXT,
    TOKENS,
    move_folder,
    order_column,
    write_manifest,
    write_shard_files,
)
from dsir_spark.stages.runner import run_stage
from dsir_spark.storage.io import (
    SCORES_ID_ADVICE,
    InputError,
    check_ids,
    good_rows,
    id_source,
    one_listing,
    original_columns,
    output_table,
    replace_text,
    require_column,
    require_writable_table,
    write_table,
)
from dsir_spark.storage.json_records import CHUNK_TEXT, RECORD, columns_found, typed, with_columns_found
from dsir_spark.storage.records import direct_path, local_path, overwrite
from dsir_spark.version import __version__

log = logging.getLogger("dsir_spark")


def write_ids(selection: DataFrame, selection_dir: str) -> DataFrame:
    """Writes the selected (id, key, log_weight, target, num_tokens) to ``<selection_dir>/ids``; returns them
    as read back (computed once)."""
    overwrite(selection).parquet(f"{selection_dir}/ids")
    return selection.sparkSession.read.parquet(f"{selection_dir}/ids")


def write_selection(
    chosen: DataFrame, raw: DataFrame, selection_dir: str, out_dir: str, *, expected: int,
    output_format: str = "parquet", add_dsir_columns: bool = True, generated_ids: bool = False,
    table_mode: str = "error", why_missing: Callable[[], str] = lambda: "", shards: ShardConfig | None = None,
    seed: int = 0, report: ReportDocuments | None = None, text_col: str = "text", added: dict[str, str] | None = None,
) -> int:
    """Writes the selected raw rows of ``chosen`` (``write_ids``' frame), with all their columns, to
    ``out_dir`` (a folder, or ``table:<name>`` for a catalog table written with ``table_mode``); returns
    the number of documents written. With ``shards``, the documents are only staged (as Parquet, with the
    shard writer's order and tokens): ``publish_shards`` writes them. With ``report``, the report's
    documents are staged from the same pass over raw, in ``<selection_dir>/held`` (Parquet, the
    selected rows' output columns beside them), and the output is written from there.

    The documents are staged in ``<selection_dir>/documents`` and counted first: unless there are
    exactly ``expected`` of them, ``out_dir`` is not written and a ResampleError says what was found
    (ids not in raw, ids found twice) and ``why_missing()`` what to do.

    Rows read whole (``json_schema: sample``) get their columns from the selected rows themselves, once
    staged (``text_col``: the column a chunk's text replaces; ``added``: the columns dsir-spark adds, see
    ``added_columns``)."""
    spark = chosen.sparkSession
    if report is None:
        joined = raw.join(chosen.withColumnRenamed(ID, "__dsir_id"), on="__dsir_id", how="inner")
        # An earlier selection's staged report documents (its record said so; this one stages none).
        local = local_path(f"{selection_dir}/held")
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)
    else:
        joined = join_held(raw, report)
    whole = RECORD in raw.columns
    if whole:  # the line, and what the run added to it: a chunk's place and text
        columns = [(RECORD, F.col(RECORD)), *[(c, F.col(c)) for c in (DOC_ID, CHUNK) if c in raw.columns]]
        if DOC_ID in raw.columns:
            columns.append((CHUNK_TEXT, F.col("__dsir_text")))
    else:
        columns = [(c, F.col(f"`{c}`")) for c in original_columns(raw)]
    if generated_ids:
        columns.append(("dsir_id", F.col("__dsir_id")))
    if add_dsir_columns:
        columns += [("dsir_log_weight", F.col("log_weight")), ("dsir_target", F.col("target"))]
    if shards is not None:
        columns += [(ORDER, order_column(shards, seed, "__dsir_id", KEY)), (TOKENS, F.col(NUM_TOKENS)),
                    ("__dsir_sid", F.col("__dsir_id"))]
        if shards.format == "megatron":  # the text the token files encode
            columns.append((SHARD_TEXT, F.col("__dsir_text")))
    table = output_table(out_dir)
    # Staged as it will be published (a rename publishes it); for shards as Parquet, which they are cut from.
    fmt = "parquet" if table or shards else output_format
    staged = f"{selection_dir}/documents"
    # Lines read whole: the selected ones' columns are found as they are staged (json_records).
    found_columns = Observation("dsir-spark-output-columns") if whole else None
    if report is None:
        documents = joined.select(*[column.alias(name) for name, column in columns])
        if found_columns is not None:  # staged first: the output is typed from the staged lines
            overwrite(with_columns_found(documents, found_columns)).parquet(f"{selection_dir}/lines")
            documents = spark.read.parquet(f"{selection_dir}/lines")
    else:  # one pass over raw stages the report's documents; the output's are read from them
        held = joined.select(*staged_columns(report.settings.label_col, columns))
        overwrite(with_columns_found(held, found_columns) if found_columns else held).parquet(f"{selection_dir}/held")
        held = spark.read.parquet(f"{selection_dir}/held")
        documents = held.where(F.col(SELECTED)).select(*[F.col(f"`{name}`") for name, _ in columns])
    if found_columns is not None:
        documents = _typed_output(documents, columns_found(found_columns), text_col, added or {})
    writer = overwrite(documents)
    (writer.json if fmt == "json" else writer.parquet)(staged)
    # A JSON Lines file holds one document per line, so the staged rows are counted without parsing them.
    found = (spark.read.text(staged) if fmt == "json" else spark.read.parquet(staged)).count()
    if found != expected:
        absent = chosen.join(raw.select(F.col("__dsir_id").alias(ID)), on=ID, how="left_anti").count()
        twice = found - (expected - absent)
        raise ResampleError(
            f"found {found} of the {expected} selected documents in the raw data, so nothing was written to "
            f"{out_dir}: {absent} selected ids are not ids of the raw dataset and {twice} more rows share a "
            f"selected id; {why_missing()}"
        )
    lines = local_path(f"{selection_dir}/lines")
    if lines is not None:  # read into the staged documents
        shutil.rmtree(lines, ignore_errors=True)
    if table:
        write_table(spark.read.parquet(staged), table, table_mode, "resample.out_dir")
    elif shards is None:
        publish_folder(spark, staged, out_dir, fmt)
    return found


def publish_shards(spark: SparkSession, config: RunConfig, summary: dict[str, Any], inputs: str) -> dict[str, Any]:
    """The staged selection as shards with their manifest, published to out_dir when complete; returns
    the manifest's totals and plan for the stage record."""
    settings, selection_dir, out_dir = config.resample, stage_dir(config, "resample"), default_out_dir(config)
    staging = f"{selection_dir}/shards"
    file_format = settings.shards.format or settings.output_format
    tokenizer = load_model_tokenizer(spark, config.tokens)
    files, plan = write_shard_files(spark.read.parquet(f"{selection_dir}/documents"), staging, settings.shards,
                                    file_format, summary["selected"], tokenizer)
    lowest = spark.read.parquet(f"{selection_dir}/ids").agg(F.min("log_weight")).first()[0]
    totals = {"files": len(files), **{k: sum(f[k] for f in files) for k in ("rows", "tokens", "bytes", "json_bytes")}}
    manifest = {
        "files": files, "totals": totals, "format": file_format, "shards": asdict(settings.shards),
        "plan": plan, "selection": {
            "fingerprint": fingerprint(stage_settings(config, "resample", inputs, spark)),
            "settings": json.loads(json.dumps(asdict(settings))), "seed": settings.seed,
            "num_to_sample": settings.num_to_sample, "num_tokens_to_sample": settings.num_tokens_to_sample,
            "min_log_weight": settings.min_log_weight,
            "temperature": settings.temperature, "top_k": settings.top_k, "documents": summary["selected"],
            "tokens": totals["tokens"], "thresholds": summary["thresholds"], "lowest_log_weight": lowest,
        },
        "features": asdict(config.features), "featurizer": requested_implementation(),
        **({"tokenizer": tokenizer.describe()} if tokenizer is not None else {}),
        "run_dir": resolved_location(config.run_dir),
        "dsir_spark": __version__, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_manifest(staging, manifest)
    if direct_path(spark, staging) is not None and direct_path(spark, out_dir) is not None:
        publish_folder(spark, staging, out_dir, file_format, marker=False)  # the manifest says it
    else:
        move_folder(staging, out_dir)
    return {"totals": totals, "plan": plan}


def check_external_scores(spark: SparkSession, config: RunConfig) -> None:
    """resample.scores checked before any heavy work: their columns, the id type against the raw
    dataset's, finite weights and enough eligible documents (one pass over the scores)."""
    scores = open_scores(spark, config)
    columns = weight_columns(spark, config, scores)
    raw_id = open_dataset(spark, config, config.raw).schema["__dsir_id"].dataType
    scores_id = scores.schema[ID].dataType
    if scores_id != raw_id:
        raise InputError(
            f"resample.scores {config.resample.scores}: column {ID!r} is {scores_id.simpleString()} but the raw "
            f"dataset's ids ({id_source(config.raw)}) are {raw_id.simpleString()}; the scores must carry the raw "
            "dataset's ids, with their type (cast the scores' id column, or set raw.id_col to match)"
        )
    require_sample_size(config.resample)
    check_selectable(scores, columns, config.resample.num_to_sample, config.resample.min_example_length,
                     config.resample.num_tokens_to_sample)


def _why_missing(spark: SparkSession, config: RunConfig, inputs: str) -> Callable[[], str]:
    """What to do when selected ids are missing from raw: scores from elsewhere must use raw's ids; this
    run's own scores only miss ids when the raw files changed since they were listed."""
    def why() -> str:
        if config.resample.scores:
            return "the scores must use the raw dataset's id_col (the same ids, of the same type)"
        with one_listing(fresh=True):  # not the listing this run began with
            changed = input_fingerprint(spark, config) != inputs
        if changed:
            return "the raw files changed while the run worked: run again"
        return ("the raw files look unchanged (same sizes and modification times); if they were rewritten in "
                "place, run again with --force")
    return why


def _check_group_values(grouped: DataFrame, quota: Quota, config: RunConfig) -> int:
    """Fails on a group_caps value that no scored document has (a misspelt group would go uncapped);
    returns how many scored documents have no group value (null), which form one group of their own."""
    column = F.col(quota.column)
    found = grouped.agg(F.count(F.when(column.isNull(), 1)).alias("null"),
                        *[F.count(F.when(column == F.lit(value), 1)).alias(f"v{i}")
                          for i, value in enumerate(quota.shares)]).first()
    missing = [value for i, value in enumerate(quota.shares) if found[f"v{i}"] == 0]
    if missing:
        common = grouped.where(column.isNotNull()).groupBy(column).count().orderBy(F.desc("count"), column).limit(8)
        values = [row[0] for row in common.collect()]
        raise InputError(f"resample.group_caps: no scored document has {config.resample.group_col} = {missing[0]!r}; "
                         f"its most frequent values are {values}: check the spelling (values compare as strings)")
    if found["null"]:
        log.warning("resample: %d scored documents have no %s (null): they form one group, shown as null, capped by "
                    "max_share", found["null"], config.resample.group_col)
    return int(found["null"])


def _require_room_in_groups(settings: ResampleConfig, documents: list[tuple[str | None, int]]) -> None:
    """Fails when the group caps leave fewer than num_to_sample of raw's documents (the count stage's
    documents per group value: an upper bound on the eligible ones, so the exact check stays at resample)."""
    k, shares = settings.num_to_sample, {cap.value: cap.max_share for cap in settings.group_caps}
    room = 0
    for value, count in documents:
        share = shares.get(value, settings.max_share) if value is not None else settings.max_share
        room += count if share is None else min(count, math.floor(share * k))
    if room < k:
        raise ResampleError(f"resample.num_to_sample={k} but the group caps leave room for at most {room} of raw's "
                            f"{sum(n for _, n in documents)} documents; raise max_share (or group_caps) or lower "
                            "num_to_sample")


def check_selectable_from_counts(config: RunConfig, counted: dict[str, Any]) -> None:
    """The request checked against the raw documents' lengths that the count stage recorded (when it
    featurized all of raw, as the score stage will): fails before fit and score, not after them. Chunks
    and external scores are other documents: they are checked when the resample stage reads them."""
    lengths = counted.get("raw_lengths")
    threshold = config.resample.min_log_weight is not None  # selects what is above it, whatever that is
    if lengths is None or config.chunking.tokens or config.resample.scores or threshold:
        return
    settings = config.resample
    groups = counted.get("raw_groups")
    if groups is not None and groups["column"] == settings.group_col and settings.num_to_sample:
        _require_room_in_groups(settings, groups["documents"])
    pairs = [(n, d) for n, d in zip(lengths["tokens"], lengths["documents"]) if n >= settings.min_example_length]
    # A budget in the model's tokens is checked when the resample stage counts them.
    budget = None if config.tokens.tokenizer else settings.num_tokens_to_sample
    require_enough(settings.num_to_sample, budget, sum(lengths["documents"]),
                   sum(d for _, d in pairs), sum(n * d for n, d in pairs), min((n for n, _ in pairs), default=None),
                   settings.min_example_length)


def _texts(raw: DataFrame, scores: DataFrame, config: RunConfig) -> DataFrame:
    """(id, text) of every scored document (or chunk), for the model tokenizer."""
    if is_chunked(scores):
        raw = expand_chunks(raw, scores, config.raw)
    return raw.select(F.col("__dsir_id").alias(ID), F.col("__dsir_text").alias(TEXT))


def _report_documents(spark: SparkSession, config: RunConfig, scores: DataFrame, chosen: DataFrame,
                      columns: list[str], summary: dict[str, Any], proportions: list[float] | None,
                      quota: Quota | None) -> ReportDocuments | None:
    """The documents the report will read, to be staged in this stage's pass over raw; None when there
    will be no report (report.enabled false, an empty selection)."""
    if not config.report.enabled or not summary["selected"]:
        return None
    return report_documents(spark, config, scores, chosen, columns, selected=summary["selected"],
                            sizes=selectable_sizes(summary), proportions=proportions, quota=quota)


def _held_chunks(scores: DataFrame, chosen: DataFrame, report: ReportDocuments | None) -> DataFrame:
    """The scored chunks whose text this stage writes: the selected ones, those the report holds, or with
    a label column every chunk (the report's label shares count chunks)."""
    if report is not None and report.settings.label_col:
        return scores
    held = chosen if report is None else report.held
    return scores.join(held.select(ID), on=ID)


def _typed_output(documents: DataFrame, schema: StructType, text_col: str, added: dict[str, str]) -> DataFrame:
    """Staged rows read whole with their columns (``schema``, found as they were staged): the selected
    rows are the only ones whose full schema the output needs (json_records)."""
    _refuse_added([field.name for field in schema.fields], added)
    rows = typed(documents, schema)
    if CHUNK_TEXT in rows.columns:  # a chunk's own text, not its document's
        rows = replace_text(rows, text_col, F.col(CHUNK_TEXT)).drop(CHUNK_TEXT)
    return rows


def added_columns(config: RunConfig) -> dict[str, str]:
    """The columns the selected documents get from dsir-spark, each with how to do without it."""
    added = {DOC_ID: "set chunking.tokens: 0", CHUNK: "set chunking.tokens: 0"} if config.chunking.tokens else {}
    if config.resample.add_dsir_columns:
        added.update(dsir_log_weight="set resample.add_dsir_columns: false",
                     dsir_target="set resample.add_dsir_columns: false")
    if config.raw.id_col is None:
        added[GENERATED_ID] = "set raw.id_col to a column of unique ids"
    return added


def _refuse_added(columns: list[str], added: dict[str, str]) -> None:
    for column, how in added.items():
        if column in columns:
            raise InputError(f"dataset raw: it has a column {column!r}, which the selected documents get from "
                             f"dsir-spark; rename that column, or {how}")


def raw_for_resample(spark: SparkSession, config: RunConfig, refresh: bool = False) -> DataFrame:
    """The raw dataset's documents (``refresh``: see run.directory.open_dataset), failing on what would stop the
    resample stage late: a missing resample.group_col, or a raw column the output adds itself."""
    raw_rows = good_rows(open_dataset(spark, config, config.raw, refresh))
    if config.resample.group_col:
        require_column(raw_rows, config.raw, config.resample.group_col, "group", "resample.group_col")
    _refuse_added(original_columns(raw_rows), added_columns(config))
    return raw_rows


def resample_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    """Reads the scores (``<run_dir>/scores`` or resample.scores), writes ``<run_dir>/selection`` (ids,
    keys) and the selected documents (or chunks)."""
    require_sample_size(config.resample)
    if 0 in (config.resample.num_to_sample, config.resample.num_tokens_to_sample):
        log.warning("resample: nothing to select (0 documents or tokens): the selection will be empty")
    inputs = input_fingerprint(spark, config)
    scored = None if config.resample.scores else require_stage(spark, config, "score", inputs)
    settings = config.resample
    selection_dir = stage_dir(config, "resample")
    out_dir = default_out_dir(config)
    table = output_table(out_dir)
    if table and (force or not stage_complete(spark, config, "resample", inputs)):
        require_writable_table(spark, table, settings.table_mode, "resample.out_dir")
    require_own_output(spark, config)

    raw_rows = raw_for_resample(spark, config)
    tokenizer = load_model_tokenizer(spark, config.tokens)

    def work() -> dict[str, Any]:
        # A selection made again makes the earlier output and report stale, whatever happens next.
        invalidate_outputs(spark, config)
        scores = open_scores(spark, config)
        columns = weight_columns(spark, config, scores)
        proportions = None
        if scored is not None:
            if not scored.get("ids_checked"):  # scored by an older version
                check_ids(scores.select(ID), f"scores in {stage_dir(config, 'score')}")
            proportions = load_model(spark, model_path(config)).target_proportions
        else:
            check_ids(scores.select(ID), f"resample.scores {settings.scores}", SCORES_ID_ADVICE)
        quota = None
        null_groups = None
        if settings.group_col:
            scores, quota = with_groups(scores, raw_rows, config)
            null_groups = _check_group_values(scores, quota, config)
        common = dict(proportions=proportions, min_example_length=settings.min_example_length, seed=settings.seed,
                      top_k=settings.top_k, temperature=settings.temperature, quota=quota)
        texts = _texts(raw_rows, scores, config) if tokenizer is not None else None
        if tokenizer is not None and settings.num_tokens_to_sample is not None:
            selection, summary = select_in_model_tokens(scores, texts, columns, settings.num_tokens_to_sample,
                                                        tokenizer, **common)
        else:
            if settings.min_log_weight is not None:
                selection, summary = select_above(scores, columns[0], settings.min_log_weight,
                                                  settings.min_example_length)
            else:
                selection, summary = select(scores, columns, settings.num_to_sample,
                                            num_tokens=settings.num_tokens_to_sample, **common)
            if tokenizer is not None:  # k documents: their tokens are the model's (counted for these k only)
                selection = (selection.drop(NUM_TOKENS).join(texts, ID)
                             .withColumn(NUM_TOKENS, token_count(tokenizer, F.col(TEXT))).drop(TEXT))
                summary["tokens_selected"] = int(selection.agg(F.sum(NUM_TOKENS)).first()[0] or 0)
                summary["model_tokens"] = {"tokenizer": tokenizer.describe(),
                                           "documents_tokenized": summary["selected"],
                                           "documents_selected": summary["selected"]}
        require_budget_used(summary)
        chosen = write_ids(selection, selection_dir)
        report = _report_documents(spark, config, scores, chosen, columns, summary, proportions, quota)
        raw = raw_rows
        if is_chunked(scores):  # raw's rows cut into the chunks the output (and the report) hold
            raw = expand_chunks(raw, _held_chunks(scores, chosen, report), config.raw)
        written = write_selection(
            chosen, raw, selection_dir, out_dir,
            expected=summary["selected"], output_format=settings.output_format,
            add_dsir_columns=settings.add_dsir_columns, generated_ids=config.raw.id_col is None,
            table_mode=settings.table_mode, why_missing=_why_missing(spark, config, inputs),
            shards=settings.shards, seed=settings.seed, report=report, text_col=config.raw.text_col,
            added=added_columns(config),
        )
        if report is not None:  # the report's documents, staged for these report settings
            summary["report_documents"] = {**report.settings.as_record(), "examples": report.examples}
        extra = {"shards": publish_shards(spark, config, summary, inputs)} if settings.shards else {}
        if not settings.shards:  # shards: the manifest names the run directory
            mark_output(spark, config)
        log.info("stage resample: selected by %s of %s", columns, scores_location(config))
        return {**summary, "out_dir": out_dir, "output_format": settings.output_format,
                "files": stage_files(spark, config, "resample"),
                "weight_columns": columns, "scores": scores_location(config),
                "length_correction": None if settings.scores else config.score.length_correction,
                "chunks": is_chunked(scores), "rows_in": summary["documents"], "rows_out": written, **extra,
                **({"null_groups": null_groups} if null_groups is not None else {})}

    return run_stage(spark, "resample", selection_dir, stage_settings(config, "resample", inputs, spark), work, force)
