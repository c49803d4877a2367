"""Why a document got its weight: its n-grams that add most to its log weight and those that take most
away, with their counts and their buckets' log ratios (``dsir-spark explain``, ``dsir.explain``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import CHUNK, DOC_ID, ID
from dsir_spark.config import RunConfig
from dsir_spark.estimators.registry import load_model
from dsir_spark.featurizer.chunks import expand_chunks, is_chunked
from dsir_spark.featurizer.features import make_featurizer, requested_implementation
from dsir_spark.run.directory import (
    StageOrderError,
    input_fingerprint,
    model_path,
    open_dataset,
    read_record,
    require_stage,
    stage_dir,
)
from dsir_spark.storage.io import InputError, good_rows

log = logging.getLogger("dsir_spark")


def explain(spark: SparkSession, config: RunConfig, ids: Sequence[Any], top: int = 10) -> list[dict[str, Any]]:
    """For each id (a raw document's id, or when the scores are chunks, a chunk's "<doc id>/<chunk>" or a
    document's id, which stands for each of its chunks), its total log weight (as the score stage computes
    it) and its ``top`` n-grams pulling toward and away from each target distribution."""
    if not config.fit.model and read_record(spark, stage_dir(config, "fit")) is None:
        raise StageOrderError(f"the fit stage has no complete output in {stage_dir(config, 'fit')}; run "
                              "dsir-spark run first (explain reads the model and the raw documents)")
    if not config.fit.model:  # the model that is there is explained; said when the settings now differ
        try:
            require_stage(spark, config, "fit", input_fingerprint(spark, config))
        except StageOrderError as exc:
            log.warning("explain: %s; explaining the model that is there", exc)
    model = load_model(spark, model_path(config))
    wanted = [str(i) for i in ids]
    raw = good_rows(open_dataset(spark, config, config.raw))
    if read_record(spark, stage_dir(config, "score")) is not None:
        scores = spark.read.parquet(stage_dir(config, "score"))
        if is_chunked(scores):
            wanted, chunks = _chunks_of(scores, wanted)
            raw = expand_chunks(raw, chunks, config.raw)
    found = {str(r["__dsir_id"]): r["__dsir_text"] for r in raw.where(
        F.col("__dsir_id").cast("string").isin(wanted)).select("__dsir_id", "__dsir_text").collect()}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InputError(f"explain: no document with id {', '.join(missing[:5])} in the raw dataset "
                         f"({', '.join(config.raw.paths)}); give ids from its id column (or the scores' id column: "
                         "on a chunked run a chunk's <doc id>/<chunk>)")
    explainer = Explainer(model)
    return [{"id": ident, **explainer.explain(found[ident], top)} for ident in wanted]


class Explainer:
    """A model's explanation of texts: each weight column's total (as the score stage computes it) and
    the ``top`` n-grams that add most to it and take most away."""

    def __init__(self, model) -> None:
        self.model = model
        self.featurizer = make_featurizer(model.features, requested_implementation())
        self.scoring = model.scoring_table()

    def explain(self, text: str | None, top: int) -> dict[str, Any]:
        num_tokens, sums = self.scoring.score(self.featurizer, [text])
        per_target = []
        for t, column in enumerate(self.model.weight_columns()):
            parts = self.model.contributions(text, t)
            per_target.append({
                "column": column, "log_weight": float(sums[t][0]),
                "constant": float(self.scoring.offsets[t]) if self.scoring.offsets is not None else 0.0,
                "toward": [_row(c) for c in sorted(parts, key=lambda c: -c.total)[:top] if c.total > 0],
                "away": [_row(c) for c in sorted(parts, key=lambda c: c.total)[:top] if c.total < 0],
            })
        return {"num_tokens": int(num_tokens[0]), "weights": per_target}


def _chunks_of(scores: DataFrame, wanted: list[str]) -> tuple[list[str], DataFrame]:
    """The chunk ids that ``wanted`` stands for (a chunk id as itself, a document id as its chunks in
    order; an id that is neither is kept, to be named as missing), and those chunks' rows."""
    chunks = scores.where(F.col(ID).cast("string").isin(wanted) | F.col(DOC_ID).cast("string").isin(wanted))
    found = chunks.select(ID, F.col(DOC_ID).cast("string").alias("doc"), CHUNK).collect()
    by_document: dict[str, list[tuple[int, str]]] = {}
    for row in found:
        by_document.setdefault(row["doc"], []).append((row[CHUNK], str(row[ID])))
    expanded = []
    for ident in wanted:
        if ident in by_document and not any(ident == chunk for _, chunk in by_document[ident]):
            expanded += [chunk for _, chunk in sorted(by_document[ident])]
        else:
            expanded.append(ident)
    return expanded, chunks


def _row(contribution) -> dict[str, Any]:
    return {"ngram": contribution.ngram, "count": contribution.count, "log_ratio": contribution.log_ratio,
            "total": contribution.total}


def format_explanation(explanation: dict[str, Any]) -> str:
    """An explanation as text for a terminal."""
    lines = [f"document {explanation['id']}: {explanation['num_tokens']} tokens"]
    for weight in explanation["weights"]:
        constant = weight.get("constant", 0.0)  # the classifier's intercept
        what = (f"the constant {constant:+.4f} plus the sum over all its n-grams of count x share" if constant
                else "the sum over all its n-grams of count x log ratio")
        lines.append(f"  {weight['column']} = {weight['log_weight']:.4f} ({what})")
        for side, label in (("toward", "toward the target"), ("away", "away from the target")):
            lines.append(f"  pulling {label}:" if weight[side] else f"  nothing pulls {label}")
            lines += [f"    {row['total']:+10.3f}  {row['count']:4d} x {row['log_ratio']:+.3f}  {row['ngram']!r}"
                      for row in weight[side]]
    return "\n".join(lines)
