"""A token budget in the trainer's tokens, exact and tokenizing only what it must.

The selection is the same definition as a wordpunct budget (resampling.select): the longest prefix of the
key order whose tokens sum to at most T, the same seeded keys, per target and under the same quotas, but
counting the model tokenizer's tokens. Tokenizing every eligible document would cost a pass of a model
tokenizer over the pool (3-10 MB/s per core against the featurizer's 40-200), so:

1. a seeded sample of eligible documents gives the ratio of model to wordpunct tokens;
2. the candidates are the top of the key order holding ``MARGIN`` x T / ratio wordpunct tokens;
3. only they are tokenized, and the exact walk (resampling.select) runs on them;
4. the walk is the whole pool's walk when it stops inside the candidates (its prefix, the documents of
   full groups it passes over and the document that stops it are all among the top of the key order,
   which the candidates are); when it uses them all up, the candidates double and the walk runs again.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dsir_spark.columns import ID, NUM_TOKENS, TEXT
from dsir_spark.featurizer.model_tokens import ModelTokenizer, token_count
from dsir_spark.randomness import uniform
from dsir_spark.selection.resampling import (
    KEY,
    Quota,
    ResampleError,
    gumbel_keys,
    select,
    split_across_targets,
    token_budget_prefix,
)

MARGIN = 1.25  # candidates hold this many times the wordpunct tokens the ratio says the budget needs
RATIO_SAMPLE_DOCUMENTS = 2000  # at most; 2% of the eligible documents, at least RATIO_MIN_DOCUMENTS
RATIO_MIN_DOCUMENTS = 25
WORDPUNCT = "__dsir_wordpunct_tokens"


def _ratio(eligible: DataFrame, texts: DataFrame, tokenizer: ModelTokenizer, seed: int, count: int) -> dict:
    """Model tokens per wordpunct token, from a seeded sample of 2% of the eligible documents (at least
    RATIO_MIN_DOCUMENTS, at most RATIO_SAMPLE_DOCUMENTS): the margin and the widening absorb its error."""
    wanted = min(RATIO_SAMPLE_DOCUMENTS, max(RATIO_MIN_DOCUMENTS, count // 50))
    rate = min(1.0, wanted / max(count, 1))
    sample = eligible.where(uniform(seed, F.col(ID), "model-token-ratio") < F.lit(rate)).select(ID, NUM_TOKENS)
    sums = (sample.join(texts, ID).select(NUM_TOKENS, token_count(tokenizer, F.col(TEXT)).alias("model"))
            .agg(F.count("*").alias("documents"), F.sum(NUM_TOKENS).alias("wordpunct"), F.sum("model").alias("model"))
            .first())
    wordpunct, model = int(sums["wordpunct"] or 0), int(sums["model"] or 0)
    return {"documents": int(sums["documents"]), "wordpunct": wordpunct, "model": model,
            "ratio": model / wordpunct if wordpunct else 1.0}


def select_in_model_tokens(
    scores: DataFrame, texts: DataFrame, weight_cols: list[str], budget: int, tokenizer: ModelTokenizer, *,
    proportions: list[float] | None, min_example_length: int, seed: int, top_k: bool, temperature: float,
    quota: Quota | None,
) -> tuple[DataFrame, dict[str, Any]]:
    """As resampling.select with ``num_tokens=budget``, counting the model tokens of each document
    (``texts``: id, text of every scored document). The selection's num_tokens are model tokens; the
    summary says how many documents were tokenized."""
    eligible = scores.where(F.col(NUM_TOKENS) >= F.lit(min_example_length))
    sizes = eligible.agg(F.count("*").alias("n"), F.sum(NUM_TOKENS).alias("t")).first()
    total = scores.count()
    remaining, remaining_count, remaining_wordpunct = eligible, int(sizes["n"]), int(sizes["t"] or 0)
    ratio = _ratio(eligible, texts, tokenizer, seed, remaining_count)
    even = [1.0 / len(weight_cols)] * len(weight_cols)
    per_target = split_across_targets(budget, list(proportions or even)) if len(weight_cols) > 1 else [budget]
    parts, thresholds, selected, tokens, tokenized, widened = [], [], 0, 0, ratio["documents"], 0
    groups = None
    for target, (column, wanted) in enumerate(zip(weight_cols, per_target)):
        if wanted == 0:
            thresholds.append(None)
            continue
        keys = gumbel_keys(remaining.withColumn(WORDPUNCT, F.col(NUM_TOKENS)), column, seed, target, top_k,
                           temperature=temperature)
        wordpunct_budget = math.ceil(MARGIN * wanted / max(ratio["ratio"], 1e-9))
        while True:
            whole = wordpunct_budget >= remaining_wordpunct
            candidates = keys if whole else keys.where(
                token_budget_prefix(keys, wordpunct_budget, remaining_count).boundary.selects())
            counted = (candidates.drop(KEY).join(texts, ID).withColumn(NUM_TOKENS, token_count(tokenizer, F.col(TEXT)))
                       .drop(TEXT).cache())
            found = counted.agg(F.count("*").alias("n"), F.sum(NUM_TOKENS).alias("t")).first()
            rows, model = int(found["n"]), int(found["t"] or 0)
            tokenized += rows
            if whole and wanted > model and target == len(weight_cols) - 1:
                raise ResampleError(f"resample.num_tokens_to_sample={budget:,} model tokens is more than the eligible "
                                    f"documents hold ({tokens + model:,} by {tokenizer.source}); lower it")
            part, summary = select(counted, [column], num_tokens=wanted, min_example_length=0, seed=seed,
                                   top_k=top_k, temperature=temperature, quota=quota, sizes=(rows, rows, model),
                                   target_offset=target)
            used_up = summary["thresholds"][0]["key"] == float("-inf")
            if used_up and not whole:  # the walk would go on past the candidates: take twice as many
                counted.unpersist()
                wordpunct_budget, widened = 2 * wordpunct_budget, widened + 1
                continue
            break
        parts.append(part)
        thresholds.append(summary["thresholds"][0])
        groups = summary.get("groups")  # quotas: one weight column, so one summary
        chosen = summary["selected"]
        picked = part.select(ID).join(remaining.select(ID, NUM_TOKENS), ID).agg(F.sum(NUM_TOKENS)).first()[0]
        remaining = remaining.join(part.select(ID), ID, "left_anti")
        remaining_count, remaining_wordpunct = remaining_count - chosen, remaining_wordpunct - int(picked or 0)
        selected, tokens = selected + chosen, tokens + summary["tokens_selected"]
    selection = parts[0]
    for part in parts[1:]:
        selection = selection.unionByName(part)
    return selection, {
        "documents": total, "eligible": int(sizes["n"]), "eligible_tokens": int(sizes["t"] or 0),
        "num_to_sample": None, "num_tokens_to_sample": budget, "selected": selected, "tokens_selected": tokens,
        "per_target": per_target, "seed": seed, "top_k": top_k, "min_example_length": min_example_length,
        "thresholds": thresholds, **({"temperature": temperature} if temperature != 1.0 else {}),
        **({"groups": groups} if groups is not None else {}),
        "model_tokens": {"tokenizer": tokenizer.describe(), "documents_tokenized": tokenized,
                         "documents_selected": selected, "ratio_sample": ratio, "widened": widened},
    }
