"""Report stage: KL reduction against baselines, log-weight and label distributions, written as
report.json, report.md and figures."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import ID, TEXT
from dsir_spark.config import RunConfig
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.chunks import expand_chunks, is_chunked
from dsir_spark.run.directory import (
    counts_path,
    default_out_dir,
    input_fingerprint,
    load_counts,
    local_path,
    model_path,
    open_dataset,
    require_stage,
    stage_dir,
    stage_settings,
)
from dsir_spark.run.scores import open_scores, weight_columns, with_groups
from dsir_spark.selection.evaluation import Figures, build_report, to_markdown
from dsir_spark.selection.examples import NGRAMS_SHOWN, TEXT_CHARS, marks
from dsir_spark.selection.report_documents import (
    ReportSettings,
    join_held,
    report_documents,
    report_rows,
    staged_report_rows,
)
from dsir_spark.selection.report_page import examples_markdown, to_html
from dsir_spark.selection.resampling import selectable_sizes
from dsir_spark.selection.shards import read_manifest, write_manifest
from dsir_spark.stages.explain import Explainer
from dsir_spark.stages.runner import run_stage
from dsir_spark.storage.io import good_rows, plain_text_bytes, require_column
from dsir_spark.storage.records import overwrite, read_json, write_json

log = logging.getLogger("dsir_spark")


def write_report(spark: SparkSession, report: dict[str, Any], folder: str, figures: dict[str, bytes]) -> None:
    """Writes report.json, report.md (linking the figures the report names, drawn there already) and
    report.html (``figures`` inline). On remote storage they go through Spark, as one-part text datasets
    of those names."""
    pages = {"report.md": to_markdown(report, report["figures"]) + examples_markdown(report),
             "report.html": to_html(report, figures)}
    local = local_path(folder)
    if local is None:
        write_json(spark, f"{folder}/report.json", report)
        for name, text in pages.items():
            overwrite(spark.createDataFrame([(text,)], "value string").coalesce(1)).text(f"{folder}/{name}")
        return
    for name, text in pages.items():
        with open(os.path.join(local, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    with open(os.path.join(local, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)


def read_report_page(spark: SparkSession, config: RunConfig) -> str:
    """The report stage's report.html (a plain file, or on remote storage the one-part text dataset)."""
    path = f"{stage_dir(config, 'report')}/report.html"
    local = local_path(path)
    if local is not None:
        with open(local, encoding="utf-8") as handle:
            return handle.read()
    return spark.read.text(path, wholetext=True).first()[0]


def _examples(config: RunConfig, chosen: list[dict[str, Any]], fetched: list[dict[str, Any]],
              model) -> list[dict[str, Any]]:
    """The report's example documents (see dsir_spark.selection.examples), each with its text's first
    TEXT_CHARS characters and the n-grams that moved its weight most, marked; ``fetched`` holds their
    raw rows (id, text, label), read in the report's pass over raw."""
    found = {row[ID]: row for row in fetched}
    explainer, features = Explainer(model), config.features
    examples = []
    for example in chosen:
        document = found.get(example[ID], {})
        text = document.get(TEXT) or ""
        weights = explainer.explain(text, NGRAMS_SHOWN)["weights"][example["target"] or 0]
        shown = text[:TEXT_CHARS]
        spans = marks(shown, {g["ngram"] for g in weights["toward"]}, {g["ngram"] for g in weights["away"]},
                      features.tokenizer, features.ngrams)
        examples.append({**example, "label": document.get("label"), "text": shown,
                         "truncated": len(text) > TEXT_CHARS, "toward": weights["toward"], "away": weights["away"],
                         "marks": [{"start": m.start, "end": m.end, "side": m.side} for m in spans]})
    return examples


# About this much of the targets' text is read for the n-gram strings that name the buckets pulling
# toward them (the most frequent strings of frequent buckets: a sample names them as well as the whole).
TARGET_STRING_BYTES = 8_000_000


def _target_texts(spark: SparkSession, config: RunConfig) -> DataFrame:
    """The targets' documents (text), a seeded sample of about TARGET_STRING_BYTES when their files are
    known to be larger."""
    texts = None
    for target in config.targets:
        frame = good_rows(open_dataset(spark, config, target)).select(F.col("__dsir_text").alias(TEXT))
        texts = frame if texts is None else texts.unionByName(frame)
    sizes = [plain_text_bytes(spark, target) for target in config.targets]
    if None not in sizes and sum(sizes) > TARGET_STRING_BYTES:
        texts = texts.sample(fraction=TARGET_STRING_BYTES / sum(sizes), seed=config.resample.seed)
    return texts


def _staged_rows(spark: SparkSession, config: RunConfig,
                 record: dict[str, Any]) -> tuple[DataFrame, list[dict[str, Any]]] | None:
    """The report's rows and examples as the resample stage staged them in its pass over raw; None when
    it staged none, or for other report settings (then the report joins raw itself)."""
    staged = record.get("report_documents")
    wanted = ReportSettings.of(config).as_record()
    if not staged or {name: staged.get(name) for name in wanted} != wanted:
        log.info("stage report: reading the raw dataset (the resample stage staged no documents for these "
                 "report settings)")
        return None
    held = spark.read.parquet(f"{stage_dir(config, 'resample')}/held")
    return staged_report_rows(held, config.report.label_col, config.raw.text_col), staged["examples"]


def _rows_from_raw(spark: SparkSession, config: RunConfig, raw: DataFrame, scores: DataFrame, selection: DataFrame,
                   columns: list[str], selected: int, sizes: tuple[int, int, int] | None,
                   proportions: list[float] | None) -> tuple[DataFrame, list[dict[str, Any]]]:
    """The report's rows and examples from a pass over raw, as the resample stage stages them."""
    quota = None
    if config.resample.group_col:  # the baselines are held to the selection's quotas too
        scores, quota = with_groups(scores, raw, config)
    documents = report_documents(spark, config, scores, selection, columns, selected=selected, sizes=sizes,
                                 proportions=proportions, quota=quota)
    if is_chunked(scores):
        raw = expand_chunks(raw, scores, config.raw)
    return report_rows(join_held(raw, documents), config.report.label_col), documents.examples


def raw_for_report(spark: SparkSession, config: RunConfig, refresh: bool = False) -> DataFrame:
    """The raw dataset's documents (``refresh``: see run.directory.open_dataset), failing on a missing
    report.label_col: found before any work, not after the selection is published."""
    raw = good_rows(open_dataset(spark, config, config.raw, refresh))
    if config.report.label_col:
        require_column(raw, config.raw, config.report.label_col, "label", "report.label_col")
    return raw


def report_stage(spark: SparkSession, config: RunConfig, force: bool = True) -> dict[str, Any]:
    """Reads counts, scores and the selection; writes ``<run_dir>/report/``."""
    inputs = input_fingerprint(spark, config)
    resampled = require_stage(spark, config, "resample", inputs)
    if not config.report.enabled or not resampled.get("selected"):
        reason = "report.enabled is false" if not config.report.enabled else "the selection is empty"
        log.info("stage report: not run (%s)", reason)
        return {"stage": "report", "skipped": True, "reason": reason}
    raw = raw_for_report(spark, config)
    label_col = config.report.label_col
    folder = stage_dir(config, "report")

    def work() -> dict[str, Any]:
        local = local_path(folder)
        if local is not None:
            os.makedirs(local, exist_ok=True)
        # Figures are drawn into the report's folder where the driver reaches it, else into a temporary
        # one: report.html holds them inline either way.
        drawing = tempfile.TemporaryDirectory(prefix="dsir-spark-figures-") if local is None else None
        figures = Figures(local or drawing.name)
        model = load_model(spark, model_path(config))
        buckets = config.features.num_buckets
        scores = open_scores(spark, config)
        columns = weight_columns(spark, config, scores)
        selection = spark.read.parquet(f"{stage_dir(config, 'resample')}/ids")
        sizes = selectable_sizes(resampled)
        selected = resampled["selected"] if sizes else selection.count()  # an older version's record
        rows, chosen = _staged_rows(spark, config, resampled) or _rows_from_raw(
            spark, config, raw, scores, selection, columns, selected, sizes, model.target_proportions)
        report = build_report(
            spark,
            scores=scores,
            selection=selection,
            selected=selected,
            rows=rows,
            raw_counts=load_counts(spark, counts_path(config, config.raw), buckets),
            target_counts=[load_counts(spark, counts_path(config, t), buckets) for t in config.targets],
            target_names=[t.name for t in config.targets],
            weight_cols=columns,
            features=config.features,
            min_example_length=config.resample.min_example_length,
            seed=config.resample.seed,
            label_col=label_col,
            bucket_weights=model.bucket_weights()[0] if not model.separate_targets else None,
            bucket_weight_name=model.bucket_weight_name,
            target_texts=_target_texts(spark, config),
            figures=figures,
            fetch_ids=sorted({example[ID] for example in chosen}),
        )
        fetched = report.pop("fetched", [])
        # Lines the reader could not parse, left out of every dataset (on_bad_records: skip), by reason.
        report["bad_records"] = {
            dataset.name: (read_json(spark, f"{counts_path(config, dataset)}.json") or {}).get("bad_records", {})
            for dataset in (config.raw, *config.targets)
        }
        if "model_tokens" in resampled:  # tokens.tokenizer: the selection's size in the trainer's tokens
            report["model_tokens"] = {"selected": resampled.get("tokens_selected"),
                                      "tokenizer": resampled["model_tokens"]["tokenizer"]}
        report["estimator"] = model.estimator
        report["warnings"] = model.uniform_weight_warnings()
        if config.report.example_documents:
            report["examples"] = _examples(config, chosen, fetched, model)
        drawn = figures.finish(report)
        inline = {}
        for path in drawn:
            with open(path, "rb") as handle:
                inline[os.path.basename(path)] = handle.read()
        report["figures"] = [os.path.basename(path) for path in drawn] if local is not None else []
        write_report(spark, report, folder, inline)
        if drawing is not None:
            drawing.cleanup()
        if config.resample.shards:  # the manifest tells a trainer how close the shards are to the target
            out_dir = default_out_dir(config)
            manifest = read_manifest(out_dir)
            write_manifest(out_dir, {**manifest, "report": {"kl_reduction": report["kl_reduction"]}})
        return {"rows_in": report["documents"]["raw"], "rows_out": 1, "report": report}

    return run_stage(spark, "report", folder, stage_settings(config, "report", inputs, spark), work, force)
