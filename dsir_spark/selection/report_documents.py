"""What the report reads of raw: the documents its three selections hold (the selection, and the random
and top-k baselines of the same size), each tagged with which of them hold it, its example documents,
and with a label column every raw row for its label.

The resample stage joins raw with its selection anyway: it joins these documents in the same pass and
stages them (``staged_columns``), so the report reads them instead of raw. A report asked for with other
settings than those staged joins raw itself (``report_rows``), to the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import ID, NUM_TOKENS, TEXT
from dsir_spark.config import RunConfig
from dsir_spark.selection.examples import choose
from dsir_spark.selection.resampling import Quota, check_selectable, select
from dsir_spark.storage.io import name_parts
from dsir_spark.storage.json_records import RECORD, record_text

SELECTIONS = ("selected", "random", "top_k")
# A document's group in the report's counting pass: the sum over the selections i holding it of
# (its target there + 1) x base^i; the targets' documents (n-gram strings only) and the raw documents no
# selection holds (read for their labels, or fetched as examples) have these.
TARGET_TEXTS = -1
HELD_BY_NONE = 0
GROUP = "__group"
LABEL = "__label"
# The documents the selections hold are sent to every task while there are at most this many (a few
# tens of MB): raw is joined where it is read, never shuffled; more are joined by a shuffle.
BROADCAST_HELD = 3_000_000
SELECTED = "__dsir_selected"  # held by the selection: its rows are the output


def code_base(weight_cols: Sequence[str]) -> int:
    """The base of the groups' codes: a selection holds a document for one of its targets, or not."""
    return len(weight_cols) + 1


def holder(code: int, index: int, base: int) -> int:
    """From a document's group: 0 if selection ``index`` does not hold it, else its target + 1."""
    return (code // base ** index) % base if code >= 0 else 0


@dataclass(frozen=True)
class ReportSettings:
    """The settings the report's documents depend on beyond the selection: staged ones serve a report
    with the same."""

    label_col: str | None
    example_documents: int

    @classmethod
    def of(cls, config: RunConfig) -> ReportSettings:
        return cls(config.report.label_col, config.report.example_documents)

    def as_record(self) -> dict[str, Any]:
        return {"label_col": self.label_col, "example_documents": self.example_documents}


@dataclass(frozen=True)
class ReportDocuments:
    """The documents the report reads: ``held`` (id, GROUP, SELECTED and the selection's columns) of
    every one a selection holds or that is an example; ``examples`` as examples.choose gives them."""

    held: DataFrame
    examples: list[dict[str, Any]]
    settings: ReportSettings


def baselines(scores: DataFrame, weight_cols: Sequence[str], *, selected: int, sizes: tuple[int, int, int],
              num_tokens: int | None, proportions: Sequence[float] | None, min_example_length: int, seed: int,
              quota: Quota | None, pool: ThreadPoolExecutor,
              per_target: list[int] | None = None) -> tuple[Future, Future]:
    """The random and top-k baselines, selected on ``pool``'s threads: as many documents as the
    selection's ``selected`` (``per_target``: that many for each target; or the same token budget
    ``num_tokens``), under the same group ``quota``, from the documents it picked from (``sizes``:
    check_selectable's answer for these scores). Random is Gumbel top-k with all weights equal and its
    own noise."""
    size = ({"num_tokens": num_tokens} if num_tokens is not None
            else {"num_to_sample": selected, "per_target": per_target})
    common = dict(proportions=proportions, min_example_length=min_example_length, seed=seed, quota=quota,
                  sizes=sizes, **size)
    grouped = [quota.column] if quota is not None else []
    flat = scores.select(ID, NUM_TOKENS, *grouped, *[F.lit(0.0).alias(c) for c in weight_cols])
    return (pool.submit(select, flat, list(weight_cols), noise_salt="random-baseline", **common),
            pool.submit(select, scores, list(weight_cols), top_k=True, **common))


def report_documents(spark: SparkSession, config: RunConfig, scores: DataFrame, selection: DataFrame,
                     weight_cols: Sequence[str], *, selected: int, sizes: tuple[int, int, int] | None,
                     proportions: Sequence[float] | None, quota: Quota | None) -> ReportDocuments:
    """The documents the report reads for ``selection`` (id, key, log_weight, target, num_tokens) of
    ``scores``: its own, its baselines' (see ``baselines``) and its examples' (examples.choose), for the
    run's report and resample settings. ``sizes``: check_selectable's answer for these scores (found
    again when None). ``held`` has the selection's columns too (null in the rows it does not hold) and
    SELECTED."""
    settings, resample = ReportSettings.of(config), config.resample
    # In the model's tokens the baselines are as many documents (their model tokens are not counted).
    num_tokens = None if config.tokens.tokenizer else resample.num_tokens_to_sample
    sizes = sizes or check_selectable(scores, list(weight_cols), selected if num_tokens is None else 0,
                                      resample.min_example_length)
    min_example_length, seed = resample.min_example_length, resample.seed
    per_target = None
    if config.tokens.tokenizer and resample.num_tokens_to_sample and len(weight_cols) > 1:
        # The model-token budget's split gave each target its documents: the baselines take as many.
        found = dict(selection.groupBy("target").count().collect())
        per_target = [int(found.get(target, 0)) for target in range(len(weight_cols))]
    # Small Spark jobs wait on scheduling more than they work: the baselines and the examples are
    # chosen side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="dsir-spark-report-documents") as pool:
        random_job, top_k_job = baselines(scores, weight_cols, selected=selected, sizes=sizes,
                                          num_tokens=num_tokens, proportions=proportions,
                                          min_example_length=min_example_length, seed=seed, quota=quota, pool=pool,
                                          per_target=per_target)
        examples = choose(scores, selection, weight_cols, settings.example_documents, seed,
                          min_example_length) if settings.example_documents else []
        (random, _), (top_k, _) = random_job.result(), top_k_job.result()
    base, separate = code_base(weight_cols), len(weight_cols) > 1
    tagged = None
    for index, frame in enumerate((selection, random, top_k)):
        target = F.col("target").cast("int") if separate else F.lit(0)
        part = frame.select(ID, ((target + F.lit(1)) * F.lit(base ** index)).alias("__code"))
        tagged = part if tagged is None else tagged.unionByName(part)
    fetch_ids = sorted({example[ID] for example in examples})
    if fetch_ids:  # joined too, held by no selection unless one holds them
        wanted = spark.createDataFrame([(i,) for i in fetch_ids], f"{ID} string")
        tagged = tagged.unionByName(wanted.select(F.col(ID).cast(scores.schema[ID].dataType).alias(ID),
                                                  F.lit(HELD_BY_NONE).alias("__code")))
    codes = tagged.groupBy(ID).agg(F.sum("__code").cast("int").alias(GROUP))
    held = (codes.join(selection, on=ID, how="left")
            .withColumn(SELECTED, (F.col(GROUP) % F.lit(base)) != F.lit(0)))
    if 3 * selected + len(fetch_ids) <= BROADCAST_HELD:
        held = F.broadcast(held)
    return ReportDocuments(held, examples, settings)


def join_held(raw: DataFrame, documents: ReportDocuments) -> DataFrame:
    """``raw`` (from ``io.read_dataset``) joined with the held documents (GROUP, SELECTED and the
    selection's columns): the held rows only, or with a label column every row (GROUP null where none
    holds it)."""
    held = documents.held.withColumnRenamed(ID, "__dsir_id")
    return raw.join(held, on="__dsir_id", how="left" if documents.settings.label_col else "inner")


def report_columns(label_col: str | None) -> dict[str, Column]:
    """The report's columns of ``join_held``'s frame, by name: ID, TEXT (of held rows only), GROUP
    (HELD_BY_NONE where none holds it) and, with ``label_col``, LABEL."""
    held = F.col(GROUP).isNotNull()
    columns = {ID: F.col("__dsir_id"), TEXT: F.when(held, F.col("__dsir_text")),
               GROUP: F.coalesce(F.col(GROUP), F.lit(HELD_BY_NONE))}
    if label_col:
        columns[LABEL] = F.col(label_col).cast("string")
    return columns


def report_rows(joined: DataFrame, label_col: str | None) -> DataFrame:
    """The report's rows (see ``report_columns``) of ``join_held``'s frame."""
    return joined.select(*[column.alias(name) for name, column in report_columns(label_col).items()])


def staged_columns(label_col: str | None, output: Sequence[tuple[str, Column]]) -> list[Column]:
    """What the resample stage stages of ``join_held``'s frame: the ``output`` columns (name, column) of
    the selected rows (null in the others, which the output leaves out), SELECTED, and the report's
    columns (named by ``staged_name``; a selected row's text is its output's, not staged twice)."""
    selected = F.coalesce(F.col(SELECTED), F.lit(False))
    report = report_columns(label_col)
    report[TEXT] = F.when(~selected, report[TEXT])
    return [*[F.when(selected, column).alias(name) for name, column in output], selected.alias(SELECTED),
            *[column.alias(staged_name(name)) for name, column in report.items()]]


def staged_name(name: str) -> str:
    """The staged column of the report's column ``name``."""
    return f"__dsir_report_{name.strip('_')}"


def staged_report_rows(staged: DataFrame, label_col: str | None, text_col: str) -> DataFrame:
    """The report's rows (as ``report_rows`` gives them) of the resample stage's staged frame, whose
    selected rows have their text in the output's ``text_col``."""
    output_text = record_text(staged, name_parts(text_col)) if RECORD in staged.columns else F.col(text_col)
    text = F.coalesce(F.col(staged_name(TEXT)), output_text)
    return staged.select(F.col(staged_name(ID)).alias(ID), text.alias(TEXT), F.col(staged_name(GROUP)).alias(GROUP),
                         *([F.col(staged_name(LABEL)).alias(LABEL)] if label_col else []))
