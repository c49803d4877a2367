"""Example documents for the report: what was selected (the highest weights, a seeded few, the ones
nearest the boundary), what was passed over (the highest weights not selected: the Gumbel noise passes
over some), and raw documents for contrast; each with the n-grams that moved its weight most marked in
its text.

The choice is a handful of ``limit``-ed queries per target (Spark keeps the top rows of each partition:
nothing of size N or k reaches the driver); only the chosen documents' texts are collected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dsir_spark.columns import ID, NUM_TOKENS
from dsir_spark.featurizer.features import tokenizer_pattern

# In the order the report shows them.
GROUPS = {
    "top": "the highest-weighted selected documents",
    "random": "a seeded random few of the selection",
    "boundary": "the selected documents nearest the boundary (the lowest keys)",
    "passed_over": "the highest-weighted documents that were not selected",
    "raw": "random raw documents, for contrast",
}
TEXT_CHARS = 2000  # of each document's text shown
NGRAMS_SHOWN = 5  # per side


def _seeded_order(seed: int, salt: str):
    return F.xxhash64(F.lit(seed), F.lit(f"dsir-spark-examples-{salt}"), F.col(ID).cast("string"))


def choose(scores: DataFrame, selection: DataFrame, weight_cols: Sequence[str], per_group: int, seed: int,
           min_example_length: int) -> list[dict[str, Any]]:
    """The chosen examples: ``group``, ``target`` (index of the weight column; None for raw), ``id``,
    ``num_tokens``, ``log_weight``, ``key`` (selected ones) and ``selected``. ``selection`` is the resample
    stage's ids (id, key, log_weight, target)."""
    chosen: list[DataFrame] = []

    def take(frame: DataFrame, group: str, target: int | None, order: list) -> None:
        chosen.append(frame.orderBy(*order).limit(per_group).select(
            F.lit(group).alias("group"), F.lit(target).cast("int").alias("target"), F.col(ID).cast("string").alias(ID),
            F.col(NUM_TOKENS).cast("long").alias(NUM_TOKENS), F.col("log_weight").cast("double").alias("log_weight"),
            F.col("key").cast("double").alias("key"), F.lit(group not in ("passed_over", "raw")).alias("selected")))

    selected = selection  # with each document's num_tokens
    eligible = scores.where(F.col(NUM_TOKENS) >= min_example_length)
    passed = eligible.join(selection.select(ID), ID, "left_anti")
    for target, column in enumerate(weight_cols):
        mine = selected.where(F.col("target") == target) if len(weight_cols) > 1 else selected
        take(mine, "top", target, [F.desc("log_weight"), ID])
        take(mine, "random", target, [_seeded_order(seed, f"selected-{target}"), ID])
        take(mine, "boundary", target, [F.asc("key"), ID])
        take(passed.withColumn("log_weight", F.col(column)).withColumn("key", F.lit(None)), "passed_over", target,
             [F.desc(column), ID])
    take(scores.withColumn("log_weight", F.col(weight_cols[0])).withColumn("key", F.lit(None)), "raw", None,
         [_seeded_order(seed, "raw"), ID])
    union = chosen[0]
    for frame in chosen[1:]:
        union = union.unionByName(frame)
    return [row.asDict() for row in union.collect()]


@dataclass(frozen=True)
class Mark:
    """A character span of the shown text inside an n-gram that pulls ``side`` ("toward" or "away")."""

    start: int
    end: int
    side: str


def marks(text: str, toward: set[str], away: set[str], tokenizer: str, ngrams: int) -> list[Mark]:
    """The spans of ``text`` whose tokens form one of the ``toward`` or ``away`` n-grams (as the featurizer
    writes them: lower-cased tokens joined by single spaces), merged where they overlap. None where
    lower-casing changes the text's length (the spans would not map back, e.g. U+0130)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        return []
    spans = [(m.start(), m.end(), m.group(0)) for m in tokenizer_pattern(tokenizer).finditer(lowered)]
    side_of: list[str | None] = [None] * len(spans)
    for n in range(1, ngrams + 1):
        for i in range(len(spans) - n + 1):
            gram = " ".join(token for _, _, token in spans[i:i + n])
            side = "toward" if gram in toward else "away" if gram in away else None
            if side:
                for j in range(i, i + n):
                    side_of[j] = side_of[j] or side
    found: list[Mark] = []
    for (start, end, _), side in zip(spans, side_of):
        if side is None:
            continue
        gap = text[found[-1].end:start] if found else "x"
        if found and found[-1].side == side and not gap.strip() and "\n" not in gap:
            found[-1] = Mark(found[-1].start, end, side)  # one span for adjacent tokens of one side on a line
        else:
            found.append(Mark(start, end, side))
    return found
