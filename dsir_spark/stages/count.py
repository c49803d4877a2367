"""Count stage: hashed n-gram bucket counts of every target and of (a sample of) the raw dataset."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import ID, TEXT
from dsir_spark.config import DatasetConfig, FeatureConfig, RunConfig
from dsir_spark.estimators.base import FitError
from dsir_spark.featurizer.counts import (
    GROUP,
    ID_KEY,
    PROBE_U,
    BucketCounts,
    count_pass,
    fit_budget_tokens,
    fit_sample_info,
    fit_uniform,
    head_tokens_per_char,
    probe_cap,
    sample_for_fit,
)
from dsir_spark.featurizer.features import requested_implementation
from dsir_spark.run.directory import (
    counts_path,
    dataset_fingerprint,
    input_fingerprint,
    open_dataset,
    stage_dir,
    stage_settings,
    write_counts,
)
from dsir_spark.stages.runner import run_stage
from dsir_spark.storage.io import (
    BAD,
    BAD_REASONS,
    GOOD,
    MALFORMED,
    NO_TEXT,
    NOT_STRING,
    NOT_UNICODE,
    NOT_UTF8,
    TOO_LONG,
    InputError,
    documents,
    files_without_text,
    first_bad_file,
    id_problem,
    id_source,
    plain_text_bytes,
    rows,
)
from dsir_spark.storage.json_records import RECORD, SAMPLE, SAMPLED_ID_NOTE
from dsir_spark.storage.records import read_json, table_exists

log = logging.getLogger("dsir_spark")


def read_inputs(spark: SparkSession, config: RunConfig, refresh: bool) -> list[DataFrame]:
    """Opens every dataset and checks paths and columns, before any heavy work: raw first (its problems
    are named first), returned after the targets."""
    raw = open_dataset(spark, config, config.raw, refresh)
    return [*(open_dataset(spark, config, t, refresh) for t in config.targets), raw]


# A count pass's group of a row: its dataset's index x _GROUPS + its kind + _SHIFT, the kinds being the
# reader's codes (GOOD, or why a line is not a document) and, for raw documents outside the fit sample
# (counted nowhere, never featurized), OUT_OF_SAMPLE; null texts apart, so that a file without the text
# column is noticed wherever its rows fall.
OUT_OF_SAMPLE, OUT_OF_SAMPLE_NULL = -1, -2
OUT_OF_SAMPLE_KINDS = (OUT_OF_SAMPLE, OUT_OF_SAMPLE_NULL)
_SHIFT, _GROUPS = 2, 16  # room for every kind: -_SHIFT to len(BAD_REASONS)


def _group(index: int, kind: int) -> int:
    return index * _GROUPS + kind + _SHIFT


# The column of the count pass holding each raw row's resample.group_col value (null for targets).
GROUP_VALUE = "__dsir_group_value"
# At most this many group values are recorded for the quota check before fit and score.
MAX_RECORDED_GROUPS = 10_000


def _grouped_rows(df: DataFrame, index: int, in_sample: Column | None, ids: bool,
                  group_value: Column | None = None, probe_u: Column | None = None) -> DataFrame:
    """(text, group, id key[, group value][, probe uniform]) of every row of a dataset; texts of rows not
    to be featurized are nulled, and the ids of datasets whose ids are not checked."""
    kind = F.col(BAD)
    if in_sample is not None:
        outside = F.when(F.col(TEXT).isNull(), F.lit(OUT_OF_SAMPLE_NULL)).otherwise(F.lit(OUT_OF_SAMPLE))
        kind = F.when((F.col(BAD) == F.lit(GOOD)) & ~in_sample, outside).otherwise(F.col(BAD))
    group = F.lit(index * _GROUPS + _SHIFT) + kind
    key = F.col(ID).cast("string") if ids else F.lit(None).cast("string")
    value = [] if group_value is None else [group_value.cast("string").alias(GROUP_VALUE)]
    return rows(df, *value).select(F.when(kind == F.lit(GOOD), F.col(TEXT)).alias(TEXT), group.alias(GROUP),
                                   key.alias(ID_KEY), *([F.col(GROUP_VALUE)] if value else []),
                                   *([probe_u.alias(PROBE_U)] if probe_u is not None else []))


def _require_text_in_every_file(df: DataFrame, dataset: DatasetConfig) -> None:
    missing = files_without_text(df, dataset)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"dataset {dataset.name}: {missing[0]}{more} has no text column {dataset.text_col!r}, "
                         "which the dataset's other files have; every file needs it, as a string: fix that file "
                         "or move it out")


def _dataset_result(by_group: dict[int, BucketCounts], df: DataFrame, index: int, dataset: DatasetConfig,
                    features: FeatureConfig, what: str) -> tuple[BucketCounts, dict[str, int]]:
    """A dataset's bucket counts and its lines the reader could not parse, by reason, from a count pass;
    fails on an empty dataset, on a file without the text column, and on such lines unless
    on_bad_records: skip."""
    def part(kind: int) -> BucketCounts | None:
        return by_group.get(_group(index, kind))

    kinds = (GOOD, OUT_OF_SAMPLE, OUT_OF_SAMPLE_NULL, *BAD_REASONS)
    if not any(part(kind) for kind in kinds):
        raise InputError(f"{what} ({', '.join(dataset.paths)}) has no documents; check its paths and filters")
    good, outside_null = part(GOOD), part(OUT_OF_SAMPLE_NULL)
    if (good.null_texts if good else 0) + (outside_null.documents if outside_null else 0):
        _require_text_in_every_file(df, dataset)
    bad = {reason: part(code).documents for code, reason in BAD_REASONS.items() if part(code)}
    if bad and dataset.on_bad_records == "fail":
        file, code = first_bad_file(df)
        how = {TOO_LONG: "raise the dataset's json_max_string_length (Spark's JSON option maxStringLen)",
               NOT_STRING: "every record's text must be a JSON string: fix them, or point text_col at a string field",
               NO_TEXT: f"every record needs the text field {dataset.text_col!r}: fix them, or check text_col",
               NOT_UTF8: "the file holds bytes that are not UTF-8 text: re-encode it as UTF-8 (e.g. iconv -f "
                         "latin1 -t utf-8)",
               NOT_UNICODE: "their text holds an escaped lone surrogate (e.g. \\ud800), which no Unicode text has: "
                            "fix or remove them"}.get(
            code, "fix or remove them")
        # A declared type: the reader takes a value its type cannot hold for malformed.
        if code == MALFORMED and dataset.json_schema not in (None, SAMPLE):
            how += ", or fix json_schema (a value its type cannot hold, e.g. a string for a BIGINT, is malformed)"
        found = ", ".join(f"{n:,} {reason}" for reason, n in bad.items())
        raise InputError(
            f"dataset {dataset.name}: {sum(bad.values()):,} lines are not documents ({found}); the first is in "
            f"{file} ({BAD_REASONS[code]}); {how}, or set on_bad_records: skip to leave them out (counted)"
        )
    if bad:
        log.warning("dataset %s: left out %s lines the reader could not parse: %s", dataset.name,
                    sum(bad.values()), bad)
    return good or BucketCounts(np.zeros(features.num_buckets, dtype=np.int64), 0, 0, 0), bad


def _fit_budget(config: RunConfig) -> int | None:
    """fit.num_tokens_to_fit in tokens (None: all)."""
    return fit_budget_tokens(config.fit.num_tokens_to_fit, config.features.num_buckets)


def _fit_sample(spark: SparkSession, config: RunConfig, raw: DataFrame) -> tuple[Column | None, dict[str, Any]]:
    """Which raw documents the fit counts (None: all), and how that was decided."""
    budget = _fit_budget(config)
    if budget is None:
        return None, {"fraction": 1.0}
    return sample_for_fit(documents(raw), budget, config.fit.sample_seed,
                          max_chars=plain_text_bytes(spark, config.raw), tokenizer=config.features.tokenizer)


# Raw text rarely holds more tokens (features.tokenizer's) than this per byte of its JSON files: English
# prose about 0.2 wordpunct tokens, source code about 0.3, CJK text in UTF-8 about 0.33 wordpunct_cjk
# tokens (one per 3-byte character). Under it, raw is taken to be under the fit budget (see _probing).
LIKELY_TOKENS_PER_BYTE = 0.5
# Above it, raw's first documents say: raw is taken to be under the budget when its bytes at their
# tokens per character, a quarter more, are (the head of a corpus is not its average: 15% under it on
# the benchmarks' 3.7 GB).
HEAD_MARGIN = 1.25


def _probing(spark: SparkSession, config: RunConfig, raw: DataFrame) -> float | None:
    """The probe's cap when raw is probably under the fit budget but its files' bytes cannot show it:
    the count pass then featurizes all of raw and estimates its tokens itself, as sample_for_fit would,
    instead of a pass for the estimate first (a second count pass follows only if raw is over the
    budget after all: a guess costs time, never a different sample). None: decide the sample first."""
    budget, max_chars = _fit_budget(config), plain_text_bytes(spark, config.raw)
    if budget is None or max_chars is None or max_chars <= budget:
        return None
    if max_chars * LIKELY_TOKENS_PER_BYTE > budget:
        head = head_tokens_per_char(documents(raw), config.features.tokenizer)
        if head is None or max_chars * head * HEAD_MARGIN > budget:
            return None
    return probe_cap(max_chars)


def _small_fit_sample(config: RunConfig, raw: BucketCounts, sample_info: dict[str, Any]) -> str | None:
    """What to say when a fit budget left the raw distribution fewer tokens than it has buckets."""
    if sample_info.get("fraction", 1.0) >= 1.0 or raw.tokens >= config.features.num_buckets:
        return None
    return (f"fit.num_tokens_to_fit={config.fit.num_tokens_to_fit} gave a raw fit sample of {raw.documents:,} "
            f"documents ({raw.tokens:,} tokens), fewer tokens than features.num_buckets="
            f"{config.features.num_buckets:,}: most buckets' raw probability is then smoothing alone; raise "
            "num_tokens_to_fit (auto = 100,000 x num_buckets) or use all")


def _count_datasets(spark: SparkSession, config: RunConfig, datasets: list[DatasetConfig], frames: list[DataFrame],
                    indices: list[int], keys: list[str],
                    sample: tuple[Column | None, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One pass over the datasets at ``indices`` (the raw dataset last, if among them): each one's bucket
    counts written with its record (stats, bad records, key, and for raw its fit sample, lengths, groups
    and id check); returns what the pass featurized. ``sample``: raw's fit sample, already decided."""
    raw_index = len(datasets) - 1
    counts_raw = raw_index in indices
    cap = _probing(spark, config, frames[raw_index]) if counts_raw and sample is None else None
    if sample is not None:
        in_sample, sample_info = sample
    elif counts_raw and cap is None:
        in_sample, sample_info = _fit_sample(spark, config, frames[raw_index])
    else:  # no raw, or raw probed in this pass
        in_sample, sample_info = None, {}
    u = fit_uniform(config.fit.sample_seed, F.col(ID))
    # With quotas and all of raw featurized, each raw document's group too (see _raw_groups).
    grouped = config.resample.group_col if counts_raw and in_sample is None and not config.chunking.tokens else None
    parts = [_grouped_rows(frames[i], i, in_sample if i == raw_index else None, i == raw_index,
                           (F.col(grouped) if i == raw_index else F.lit(None)) if grouped else None,
                           (u if i == raw_index else F.lit(None).cast("double")) if cap is not None else None)
             for i in indices]
    union = parts[0]
    for other in parts[1:]:
        union = union.unionByName(other)
    # Every raw document's length too, when all of raw is featurized: the request is then checked
    # before fit and score (see stages.resample.check_selectable_from_counts).
    raw_groups = [_group(raw_index, kind) for kind in (GOOD, *OUT_OF_SAMPLE_KINDS)]
    counted = count_pass(union, config.features, F.col(GROUP), id_groups=raw_groups if counts_raw else [],
                         length_groups=[_group(raw_index, GOOD)] if counts_raw and in_sample is None else [],
                         labels=F.col(GROUP_VALUE) if grouped else None,
                         probe=(F.col(PROBE_U), [_group(raw_index, GOOD)], cap) if cap is not None else None)
    if cap is not None:
        sample_info = fit_sample_info(_fit_budget(config), *counted.probe, cap)
        if sample_info is None or sample_info["fraction"] < 1.0:  # raw is over the budget after all
            log.info("stage count: raw holds more than fit.num_tokens_to_fit tokens: counted again, its fit "
                     "sample only")
            sample = ((u < F.lit(sample_info["fraction"]), sample_info) if sample_info is not None
                      else _fit_sample(spark, config, frames[raw_index]))
            return _count_datasets(spark, config, datasets, frames, indices, keys, sample)
    results = {}
    for index in indices:
        dataset = datasets[index]
        what = f"target dataset {dataset.name}" if index < raw_index else "raw dataset"
        counts, bad = _dataset_result(counted.counts, frames[index], index, dataset, config.features, what)
        if index < raw_index and counts.tokens == 0:
            raise FitError(
                f"target dataset {dataset.name} ({', '.join(dataset.paths)}) has no tokens in column "
                f"{dataset.text_col!r} ({counts.documents} documents, {counts.null_texts} null texts); check "
                "its paths and text_col"
            )
        results[index] = (counts, bad)
    raw_extra: dict[str, Any] = {}
    if counts_raw:
        # Every raw document needs its own id (the resample stage relies on it): checked in this pass.
        ids = counted.ids
        problem = id_problem(f"raw dataset ({', '.join(config.raw.paths)}), {id_source(config.raw)}",
                             ids.null_ids, ids.duplicated, ids.examples)
        if problem and ids.null_ids and RECORD in frames[raw_index].columns:
            problem += SAMPLED_ID_NOTE
        if problem:
            raise InputError(problem)
        raw_extra = {"fit_sample": sample_info, "num_tokens_to_fit": config.fit.num_tokens_to_fit,
                     "ids_checked": True}
        if in_sample is None:
            lengths = sorted(counted.lengths.items())
            raw_extra["raw_lengths"] = {"tokens": [n for n, _ in lengths], "documents": [d for _, d in lengths]}
        documents_per_group = counted.labels.get(_group(raw_index, GOOD), {})
        if grouped and len(documents_per_group) <= MAX_RECORDED_GROUPS:
            raw_extra["raw_groups"] = {"column": grouped, "documents": sorted(documents_per_group.items(),
                                                                              key=lambda item: str(item[0]))}
        warning = _small_fit_sample(config, results[raw_index][0], sample_info)
        if warning:
            log.warning("stage count: %s", warning)
            raw_extra["warnings"] = [warning]
    features = asdict(config.features)
    for index, (counts, bad) in results.items():
        dataset = datasets[index]
        extra = {"features": features, "dataset": asdict(dataset), "bad_records": bad, "key": keys[index],
                 "featurized": counts.documents, **(raw_extra if index == raw_index else {})}
        write_counts(spark, counts_path(config, dataset), counts, extra)
    featurized = sum(counts.documents for counts, _ in results.values())
    compiled = sum(counts.compiled_documents for counts, _ in results.values())
    return {"requested": requested_implementation(), "documents_compiled": compiled,
            "documents_python": featurized - compiled}


def _stored_counts(spark: SparkSession, config: RunConfig, dataset: DatasetConfig, key: str) -> dict[str, Any] | None:
    """A dataset's count record when its counts were made from the same files and settings (``key``)."""
    record = read_json(spark, f"{counts_path(config, dataset)}.json")
    if record is None or record.get("key") != key or not table_exists(spark, counts_path(config, dataset)):
        return None
    return record


def count_stage(spark: SparkSession, config: RunConfig, force: bool = True, reuse: bool = True) -> dict[str, Any]:
    """Bucket counts of every dataset. Each dataset's counts are kept with a fingerprint of what they
    depend on (``dataset_fingerprint``): a dataset whose fingerprint is unchanged is not read again
    (``reuse``), so a new or changed target costs a pass over that target alone."""
    inputs = input_fingerprint(spark, config)
    frames = read_inputs(spark, config, refresh=force)
    datasets = [*config.targets, config.raw]
    raw_index = len(datasets) - 1
    keys = [dataset_fingerprint(spark, config, dataset, raw=index == raw_index)
            for index, dataset in enumerate(datasets)]

    def work() -> dict[str, Any]:
        stored = [_stored_counts(spark, config, d, key) if reuse else None for d, key in zip(datasets, keys)]
        missing = [index for index, record in enumerate(stored) if record is None]
        featurizer = {"requested": requested_implementation(), "documents_compiled": 0, "documents_python": 0}
        if missing:
            featurizer = _count_datasets(spark, config, datasets, frames, missing, keys)
        for index in missing:
            stored[index] = read_json(spark, f"{counts_path(config, datasets[index])}.json")
        if len(missing) < len(datasets):
            log.info("stage count: counts of %s reused (same files and settings)",
                     ", ".join(d.name for i, d in enumerate(datasets) if i not in missing))
        raw = stored[raw_index]
        summary: dict[str, Any] = {
            "targets": {d.name: _stats(r) for d, r in zip(config.targets, stored)},
            "raw": _stats(raw),
            "bad_records": {d.name: r.get("bad_records", {}) for d, r in zip(datasets, stored)},
            "datasets": {d.name: "counted" if i in missing else "reused" for i, d in enumerate(datasets)},
            **{k: raw[k] for k in ("raw_lengths", "raw_groups", "warnings") if k in raw},
        }
        featurized = featurizer["documents_compiled"] + featurizer["documents_python"]
        summary["featurizer"] = featurizer
        # Said where it matters: documents the slower pure-Python featurizer handled (the record says both).
        log.log(logging.INFO if featurizer["documents_python"] else logging.DEBUG,
                "stage count: %d documents featurized by the compiled featurizer, %d by pure Python",
                featurizer["documents_compiled"], featurizer["documents_python"])
        return {**summary, "ids_checked": bool(raw.get("ids_checked")), "rows_in": featurized,
                "rows_out": config.features.num_buckets * len(datasets)}

    return run_stage(spark, "count", stage_dir(config, "count"), stage_settings(config, "count", inputs), work, force)


def _stats(record: dict[str, Any]) -> dict[str, int]:
    return {k: record[k] for k in ("documents", "tokens", "null_texts", "num_features")}
