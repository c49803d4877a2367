"""Distributed weighted resampling: exactly k documents by Gumbel top-k, reproducible at any scale.

Sampling k documents without replacement with probabilities proportional to exp(log_weight) is the
same as keeping the k largest keys ``log_weight + Gumbel noise`` (Gumbel top-k); everything stays in
log space. The noise of a document comes from a hash of (seed, target, id), so the selection is a
function of the data and the settings alone. Ties are broken by id (ascending).

The exact global top-k avoids a full sort. A k of at most ``BAND_LIMIT`` takes one pass: each
partition keeps its k largest keys and the driver merges them. A larger k is bracketed by a hashed
sample of the keys (at most ``SAMPLE_SIZE``); one pass counts the rows above the bracket and collects
the rows inside it, which are sorted on the driver to find the boundary (key, id). A bracket that
missed, or holds too many rows, is narrowed or widened and tried again. The selection is then a
filter, so driver memory does not grow with N or k, and a larger k takes about two passes over the keys.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dsir_spark.columns import ID, NUM_TOKENS
from dsir_spark.randomness import uniform

log = logging.getLogger("dsir_spark")
KEY = "key"
BAND_LIMIT = 50_000
SAMPLE_SIZE = 20_000
# How many standard deviations of the sample rank the bracket spans on each side of the k-th key.
_SPREAD = 6.0


class ResampleError(ValueError):
    """The request cannot be met (more documents than are eligible)."""


@dataclass(frozen=True)
class Boundary:
    """The last selected (key, id): a row is selected iff (key, -id) >= (boundary key, -boundary id).
    Without an id, the rows whose key is above ``key`` (all rows when it is -inf)."""

    key: float
    ident: Any = None

    def selects(self) -> Column:
        key, ident = F.col(KEY), F.col(ID)
        if self.ident is None:
            return key > F.lit(self.key)
        return (key > F.lit(self.key)) | ((key == F.lit(self.key)) & (ident <= F.lit(self.ident)))


@dataclass(frozen=True)
class Quota:
    """Group caps: the share of the selection (tokens with a token budget, else documents) that the
    documents of each value of ``column`` may take; ``default`` for values not in ``shares`` (None:
    uncapped)."""

    column: str
    default: float | None
    shares: dict[str, float]

    def cap(self, amount: int) -> Column:
        """Each row's group cap for a selection of ``amount`` documents or tokens (null: uncapped)."""
        group = F.col(self.column).cast("string")
        default = F.lit(None) if self.default is None else F.lit(math.floor(self.default * amount))
        cap = default
        for value, share in self.shares.items():
            cap = F.when(group == F.lit(value), F.lit(math.floor(share * amount))).otherwise(cap)
        return cap.cast("long")


def within_quota(keys: DataFrame, quota: Quota, amount: int, by_tokens: bool) -> DataFrame:
    """The rows of ``keys`` a group cap does not pass over: in each group, the longest prefix of the key
    order whose documents (or tokens) stay within the group's cap. The selection among them, in key
    order, is then exactly the greedy walk that passes over documents of full groups."""
    order = Window.partitionBy(quota.column).orderBy(F.desc(KEY), F.asc(ID))
    running = (F.sum(NUM_TOKENS).over(order.rowsBetween(Window.unboundedPreceding, Window.currentRow))
               if by_tokens else F.row_number().over(order))
    cap = quota.cap(amount)
    ranked = keys.withColumn("__dsir_running", running)
    return ranked.where(cap.isNull() | (F.col("__dsir_running") <= cap)).drop("__dsir_running")


@dataclass(frozen=True)
class Prefix:
    """A selected prefix of the key order: its boundary, documents and tokens."""

    boundary: Boundary
    rows: int
    tokens: int


def gumbel_keys(
    scores: DataFrame, weight_col: str, seed: int | Column, target: int, top_k: bool, noise_salt: str = "gumbel",
    temperature: float = 1.0,
) -> DataFrame:
    """Adds ``key`` = log weight / temperature (+ Gumbel noise of (salt, seed, target, id) unless top_k):
    a temperature below 1 sharpens the selection toward the top-k, above 1 flattens it toward uniform."""
    weight = F.col(weight_col) if temperature == 1.0 else F.col(weight_col) / F.lit(float(temperature))
    if top_k:
        return scores.withColumn(KEY, weight)
    u = uniform(seed, F.col(ID), f"{noise_salt}-{target}")
    return scores.withColumn(KEY, weight - F.log(-F.log(u)))


def _boundary_of_ties(band: DataFrame, need: int) -> Boundary:
    """All keys in the band are equal: the boundary is the need-th smallest id, found distributedly."""
    row = band.orderBy(F.col(ID).asc()).limit(need).agg(F.max(ID).alias("ident"), F.max(KEY).alias("key")).first()
    return Boundary(row["key"], row["ident"])


def _bracket(band: DataFrame, need: int, band_size: int, spread: float, salt: str) -> tuple[float, float, float]:
    """(low, high, expected rows in [low, high]): keys that bracket the band's need-th largest key,
    read off a hashed sample of the band's keys."""
    rate = min(1.0, SAMPLE_SIZE / band_size)
    sampled = F.when(uniform(0, F.col(ID), salt) < F.lit(rate), F.col(KEY))
    keys = sorted(band.agg(F.collect_list(sampled).alias("keys")).first()["keys"], reverse=True)
    if not keys:
        return float("-inf"), float("inf"), float(band_size)
    # Where the need-th largest key falls among the sampled ones (1-based).
    return _around(keys, need * len(keys) / band_size, band_size, spread)


def _around(keys: list[float], rank: float, band_size: int, spread: float) -> tuple[float, float, float]:
    """(low, high, expected band rows): the sampled ``keys`` (descending) ``spread`` standard deviations of
    a sample rank either side of ``rank``, the place in the sample where the boundary is expected."""
    m = len(keys)
    width = spread * (rank * max(0.0, 1.0 - rank / m)) ** 0.5 + 1.0
    top, bottom = int(rank - width), int(rank + width) + 1
    high = keys[top - 1] if top >= 1 else float("inf")
    low = keys[bottom - 1] if bottom <= m else float("-inf")
    return low, high, (min(bottom, m + 1) - max(top, 0)) / m * band_size


def top_k_boundary(keys: DataFrame, k: int, total: int) -> Boundary:
    """The boundary of the k largest keys (ties by ascending id) among ``total`` rows, 1 <= k <= total."""
    band, need, band_size = keys.select(ID, KEY), k, total
    spread, attempt = _SPREAD, 0
    while True:
        if need <= BAND_LIMIT:  # one job: each partition keeps its need largest, the driver merges them
            chosen = band.orderBy(F.desc(KEY), F.asc(ID)).limit(need).collect()[-1]
            return Boundary(chosen[KEY], chosen[ID])
        low, high, expected = _bracket(band, need, band_size, spread, f"top-k-sample-{attempt}")
        attempt += 1
        inside = (F.col(KEY) >= F.lit(low)) & (F.col(KEY) <= F.lit(high))
        collect = expected <= BAND_LIMIT / 2  # collect the band in the same pass when it is surely small
        aggregates = [F.count(F.when(F.col(KEY) > F.lit(high), 1)).alias("above"),
                      F.count(F.when(F.col(KEY) >= F.lit(low), 1)).alias("at_least_low")]
        if collect:
            aggregates.append(F.collect_list(F.when(inside, F.struct(KEY, ID))).alias("band"))
        row = band.agg(*aggregates).first()
        above, at_least_low = int(row["above"]), int(row["at_least_low"])
        if not above < need <= at_least_low:
            spread *= 2  # the sample missed the k-th key (rare): a wider bracket, a new sample
            continue
        if low == high and at_least_low - above > BAND_LIMIT:
            return _boundary_of_ties(band.where(inside), need - above)
        if collect and len(row["band"]) == at_least_low - above:
            rows = sorted(row["band"], key=lambda r: (-r[KEY], r[ID]))
            chosen = rows[need - above - 1]
            return Boundary(chosen[KEY], chosen[ID])
        band, need, band_size = band.where(inside), need - above, at_least_low - above
        log.debug("top-k band narrowed to %d rows, %d still to pick", band_size, need)


def _walk(rows: list, need: int, rows_above: int, budget: int, high: float) -> Prefix:
    """The prefix ending at the last of the band's ``rows`` whose running token sum stays within
    ``need`` (rows in any order: sorted here by key, then id); ``rows_above`` rows above the band
    (keys over ``high``) hold the other ``budget - need`` tokens."""
    last, taken, count = None, 0, 0
    for row in sorted(rows, key=lambda r: (-r[KEY], r[ID])):
        if taken + row[NUM_TOKENS] > need:
            break
        last, taken, count = row, taken + row[NUM_TOKENS], count + 1
    boundary = Boundary(high) if last is None else Boundary(last[KEY], last[ID])
    return Prefix(boundary, rows_above + count, budget - need + taken)


def _token_bracket(band: DataFrame, need: int, band_size: int, spread: float,
                   salt: str) -> tuple[float, float, float]:
    """(low, high, expected rows in [low, high]): keys that bracket where the band's running token sum
    (in key order) passes ``need``, read off a hashed sample of the band's (key, tokens)."""
    rate = min(1.0, SAMPLE_SIZE / band_size)
    sampled = F.when(uniform(0, F.col(ID), salt) < F.lit(rate), F.struct(KEY, NUM_TOKENS))
    rows = sorted(band.agg(F.collect_list(sampled).alias("s")).first()["s"], key=lambda r: -r[KEY])
    m, running, rank = len(rows), 0.0, len(rows)
    for index, row in enumerate(rows):
        running += row[NUM_TOKENS] / rate
        if running > need:
            rank = index + 1
            break
    if m == 0:
        return float("-inf"), float("inf"), float(band_size)
    return _around([row[KEY] for row in rows], rank, band_size, spread)


def _prefix_of_ties(band: DataFrame, need: int, rows_above: int, budget: int, high: float) -> Prefix:
    """The band's rows share one key: the prefix by ascending id whose tokens fit in ``need``, from a
    running sum over the band (one sorted task; only for more than BAND_LIMIT exactly equal keys)."""
    running = F.sum(NUM_TOKENS).over(Window.orderBy(ID).rowsBetween(Window.unboundedPreceding, Window.currentRow))
    row = (band.withColumn("running", running).where(F.col("running") <= F.lit(need))
           .agg(F.max(ID).alias("ident"), F.max(KEY).alias("key"), F.count("*").alias("rows"),
                F.max("running").alias("taken")).first())
    if not row["rows"]:
        return Prefix(Boundary(high), rows_above, budget - need)
    return Prefix(Boundary(row["key"], row["ident"]), rows_above + int(row["rows"]), budget - need + int(row["taken"]))


def token_budget_prefix(keys: DataFrame, budget: int, total: int) -> Prefix:
    """The longest prefix of the key order (key descending, ties by ascending id) of ``total`` rows whose
    ``num_tokens`` sum to at most ``budget``: exact, with nothing of size N on the driver. A hashed
    sample brackets the key where the running sum passes the budget; one pass sums the tokens above
    the bracket and counts the rows inside it; a band of at most BAND_LIMIT rows is walked on the driver."""
    band, need, band_size = keys.select(ID, KEY, NUM_TOKENS), budget, total
    rows_above, spread, attempt, high = 0, _SPREAD, 0, float("inf")
    while True:
        if band_size <= BAND_LIMIT:
            return _walk(band.collect(), need, rows_above, budget, high)
        low, top, expected = _token_bracket(band, need, band_size, spread, f"token-sample-{attempt}")
        attempt += 1
        inside = (F.col(KEY) >= F.lit(low)) & (F.col(KEY) <= F.lit(top))
        aggregates = [F.sum(F.when(F.col(KEY) > F.lit(top), F.col(NUM_TOKENS))).alias("above_tokens"),
                      F.count(F.when(F.col(KEY) > F.lit(top), 1)).alias("above"),
                      F.sum(F.when(F.col(KEY) >= F.lit(low), F.col(NUM_TOKENS))).alias("through_band"),
                      F.count(F.when(inside, 1)).alias("inside")]
        collect = expected <= BAND_LIMIT / 2  # collect the band in the same pass when it is surely small
        if collect:
            aggregates.append(F.collect_list(F.when(inside, F.struct(ID, KEY, NUM_TOKENS))).alias("band"))
        row = band.agg(*aggregates).first()
        above_tokens, through = int(row["above_tokens"] or 0), int(row["through_band"] or 0)
        if not (above_tokens <= need and (through > need or low == float("-inf"))):
            spread *= 2  # the sample missed where the budget runs out (rare): a wider bracket
            continue
        band, high = band.where(inside), top
        need, rows_above, band_size = need - above_tokens, rows_above + int(row["above"]), int(row["inside"])
        if collect and len(row["band"]) == band_size:
            return _walk(row["band"], need, rows_above, budget, high)
        if low == top and band_size > BAND_LIMIT:  # one key shared by many rows: their order is by id
            return _prefix_of_ties(band, need, rows_above, budget, high)
        log.debug("token budget band narrowed to %d rows, %d tokens still to fill", band_size, need)


_NOT_FINITE = ("NaN", "infinite", "null")


def _not_finite_counts(column: str, index: int) -> list[Column]:
    """Counts of the values of a weight column that cannot take part (never selected silently)."""
    weight = F.col(column).cast("double")
    kinds = (F.isnan(weight), F.abs(weight) == F.lit(float("inf")), weight.isNull())
    return [F.count(F.when(kind, 1)).alias(f"{name}_{index}") for name, kind in zip(_NOT_FINITE, kinds)]


def _require_finite(sizes, column: str, index: int, total: int) -> None:
    found = {name: int(sizes[f"{name}_{index}"]) for name in _NOT_FINITE}
    if any(found.values()):
        kinds = ", ".join(f"{n:,} {name}" for name, n in found.items() if n)
        raise ResampleError(
            f"weight column {column!r}: {sum(found.values()):,} of {total:,} values are not finite numbers "
            f"({kinds}); fix or filter those rows of the scores (a weight of -inf would mean never; give a "
            "very low finite one)"
        )


def require_enough(num_to_sample: int | None, num_tokens: int | None, total: int, eligible: int, tokens: int,
                   shortest: int | None, min_example_length: int) -> None:
    """Fails unless the eligible documents (``eligible`` of ``total``, holding ``tokens``, the shortest
    ``shortest`` long) can give ``num_to_sample`` documents, or a non-empty selection within a token
    budget of ``num_tokens`` that does not simply take them all."""
    counted = (f"{eligible} of {total} documents are eligible (at least min_example_length={min_example_length} "
               "tokens)")
    if num_to_sample is not None and num_to_sample > eligible:
        raise ResampleError(f"resample.num_to_sample={num_to_sample} but only {counted}; lower num_to_sample or "
                            "min_example_length")
    if not num_tokens:  # none, or 0: an empty selection asked for
        return
    if num_tokens > tokens:
        raise ResampleError(f"resample.num_tokens_to_sample={num_tokens:,} but {counted}, holding {tokens:,} tokens "
                            "in all: it would select every one of them; lower num_tokens_to_sample (or "
                            "min_example_length)")
    if shortest is not None and num_tokens < shortest:
        raise ResampleError(f"resample.num_tokens_to_sample={num_tokens:,} selects no document: the shortest eligible "
                            f"document has {shortest:,} tokens; raise num_tokens_to_sample")


def check_selectable(scores: DataFrame, weight_cols: list[str], num_to_sample: int | None,
                     min_example_length: int, num_tokens: int | None = None) -> tuple[int, int, int]:
    """(documents, eligible documents, their tokens) of the scores, in one pass that also fails on
    weights that are not finite and on a request the eligible documents cannot meet (require_enough)."""
    long_enough = F.col(NUM_TOKENS) >= F.lit(min_example_length)
    not_finite = [count for i, c in enumerate(weight_cols) for count in _not_finite_counts(c, i)]
    sizes = scores.agg(F.count("*").alias("total"), F.count(F.when(long_enough, 1)).alias("eligible"),
                       F.sum(F.when(long_enough, F.col(NUM_TOKENS))).alias("tokens"),
                       F.min(F.when(long_enough, F.col(NUM_TOKENS))).alias("shortest"), *not_finite).first()
    total, eligible_count, tokens = int(sizes["total"]), int(sizes["eligible"]), int(sizes["tokens"] or 0)
    for i, column in enumerate(weight_cols):
        _require_finite(sizes, column, i, total)
    require_enough(num_to_sample, num_tokens, total, eligible_count, tokens, sizes["shortest"], min_example_length)
    return total, eligible_count, tokens


def selectable_sizes(summary: dict[str, Any]) -> tuple[int, int, int] | None:
    """check_selectable's answer (documents, eligible documents, their tokens) as a selection's summary
    (or the resample stage's record of it) holds it; None in a record from a version that did not."""
    if "eligible_tokens" not in summary:
        return None
    return summary["documents"], summary["eligible"], summary["eligible_tokens"]


def require_budget_used(summary: dict[str, Any]) -> None:
    """Fails when a token budget (or a target's share of it) selected no document: the first document in
    key order did not fit, so the selection would be empty though tokens were asked for."""
    budget = summary.get("num_tokens_to_sample")
    for target, (wanted, threshold) in enumerate(zip(summary["per_target"], summary["thresholds"])):
        if budget and wanted and threshold is not None and threshold["documents"] == 0:
            share = f" (target {target}'s share of {budget:,})" if len(summary["per_target"]) > 1 else ""
            raise ResampleError(f"resample.num_tokens_to_sample: a budget of {wanted:,} tokens{share} selects no "
                                "document: the first document in key order is longer than that; raise "
                                "num_tokens_to_sample")


def select_above(scores: DataFrame, weight_col: str, threshold: float,
                 min_example_length: int) -> tuple[DataFrame, dict[str, Any]]:
    """Every eligible document whose ``weight_col`` is at least ``threshold`` (no noise: the same filter on
    any snapshot), as (id, key, log_weight, target, num_tokens) with the key its weight; and a summary."""
    eligible = F.col(NUM_TOKENS) >= F.lit(min_example_length)
    above = eligible & (F.col(weight_col) >= F.lit(float(threshold)))
    sizes = scores.agg(F.count("*").alias("total"), F.count(F.when(eligible, 1)).alias("eligible"),
                       F.sum(F.when(eligible, F.col(NUM_TOKENS))).alias("eligible_tokens"),
                       F.count(F.when(above, 1)).alias("selected"),
                       F.sum(F.when(above, F.col(NUM_TOKENS))).alias("tokens")).first()
    selection = scores.where(above).select(ID, F.col(weight_col).alias(KEY), F.col(weight_col).alias("log_weight"),
                                           F.lit(0).alias("target"), NUM_TOKENS)
    selected, tokens = int(sizes["selected"]), int(sizes["tokens"] or 0)
    return selection, {
        "documents": int(sizes["total"]), "eligible": int(sizes["eligible"]),
        "eligible_tokens": int(sizes["eligible_tokens"] or 0), "num_to_sample": None, "min_log_weight": threshold,
        "selected": selected, "tokens_selected": tokens, "per_target": [selected], "top_k": True,
        "min_example_length": min_example_length,
        "thresholds": [{"key": float(threshold), "id": None, "documents": selected, "tokens": tokens}],
    }


def split_across_targets(num_to_sample: int, proportions: list[float]) -> list[int]:
    """The reference's split: floor of k * p for each target, the remainder to the last."""
    per_target = [int(num_to_sample * p) for p in proportions]
    per_target[-1] += num_to_sample - sum(per_target)
    return per_target


def select(
    scores: DataFrame,
    weight_cols: list[str],
    num_to_sample: int | None = None,
    *,
    num_tokens: int | None = None,
    proportions: list[float] | None = None,
    min_example_length: int = 100,
    seed: int = 0,
    top_k: bool = False,
    temperature: float = 1.0,
    noise_salt: str = "gumbel",
    quota: Quota | None = None,
    sizes: tuple[int, int, int] | None = None,
    target_offset: int = 0,
    per_target: list[int] | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Selects from scores (id, num_tokens, weight columns) exactly ``num_to_sample`` documents, or the
    longest prefix of the key order whose tokens sum to at most ``num_tokens``.

    Returns (id, key, log_weight, target, num_tokens) of the selection and a summary. With several weight columns
    (separate targets) k (or the token budget) is split by ``proportions`` and each target picks from
    what earlier targets left, so no id is chosen twice. ``noise_salt`` gives a baseline noise
    independent of the selection's; ``temperature`` divides the log weights before the noise is added;
    ``quota`` (one weight column only) passes over the documents of groups that are full. ``sizes``:
    check_selectable's answer for these scores, when the caller has it already. ``target_offset``: the
    index of the first weight column's target (its noise and its ``target`` value), for a caller that
    selects one target at a time. ``per_target``: each target's amount as given, instead of the split by
    ``proportions`` (they sum to the amount).
    """
    if (num_to_sample is None) == (num_tokens is None):
        raise ValueError("give exactly one of num_to_sample and num_tokens")
    started = time.time()
    eligible = scores.where(F.col(NUM_TOKENS) >= F.lit(min_example_length))
    total, eligible_count, eligible_tokens = sizes or check_selectable(scores, weight_cols, num_to_sample,
                                                                       min_example_length, num_tokens)
    amount = num_to_sample if num_tokens is None else num_tokens
    if per_target is not None:
        if len(per_target) != len(weight_cols) or sum(per_target) != amount:
            raise ValueError(f"per_target {per_target} does not split {amount} between {len(weight_cols)} targets")
    elif len(weight_cols) > 1:
        even = [1.0 / len(weight_cols)] * len(weight_cols)
        per_target = split_across_targets(amount, list(proportions or even))
    else:
        per_target = [amount]
    remaining, remaining_count, remaining_tokens = eligible, eligible_count, eligible_tokens
    parts, thresholds, selected, tokens = [], [], 0, 0
    for target, (weight_col, wanted) in enumerate(zip(weight_cols, per_target)):
        if wanted == 0:
            thresholds.append(None)
            continue
        target += target_offset
        keys = gumbel_keys(remaining, weight_col, seed, target, top_k, noise_salt, temperature)
        if quota is not None:
            keys = within_quota(keys, quota, wanted, num_tokens is not None).cache()
            left = keys.agg(F.count("*").alias("rows"), F.sum(NUM_TOKENS).alias("tokens")).first()
            remaining_count, remaining_tokens = int(left["rows"]), int(left["tokens"] or 0)
            if num_tokens is None and wanted > remaining_count:
                raise ResampleError(f"resample.num_to_sample={wanted} but the group caps leave {remaining_count} "
                                    "eligible documents; raise max_share (or group_caps) or lower num_to_sample")
        if num_tokens is None:
            prefix = Prefix(top_k_boundary(keys, wanted, remaining_count), wanted, 0)
        elif wanted >= remaining_tokens:  # the budget holds every remaining document
            prefix = Prefix(Boundary(float("-inf")), remaining_count, remaining_tokens)
        else:
            prefix = token_budget_prefix(keys, wanted, remaining_count)
        chosen = keys.where(prefix.boundary.selects()).select(
            ID, KEY, F.col(weight_col).alias("log_weight"), F.lit(target).alias("target"), NUM_TOKENS
        )
        parts.append(chosen)
        if quota is not None:
            summary_groups = _group_totals(keys.where(prefix.boundary.selects()), quota.column)
        threshold = {"key": prefix.boundary.key, "id": prefix.boundary.ident}
        if num_tokens is not None:
            threshold.update(documents=prefix.rows, tokens=prefix.tokens)
        thresholds.append(threshold)
        remaining = remaining.join(chosen.select(ID), on=ID, how="left_anti")
        remaining_count, remaining_tokens = remaining_count - prefix.rows, remaining_tokens - prefix.tokens
        selected, tokens = selected + prefix.rows, tokens + prefix.tokens
    if parts:
        selection = parts[0]
        for part in parts[1:]:
            selection = selection.unionByName(part)
    else:  # nothing asked for: an empty selection with the right schema
        selection = gumbel_keys(scores, weight_cols[0], seed, 0, top_k=True).where(F.lit(False)).select(
            ID, KEY, F.col(weight_cols[0]).alias("log_weight"), F.lit(0).alias("target"), NUM_TOKENS
        )
    summary = {
        "documents": total,
        "eligible": eligible_count,
        "eligible_tokens": eligible_tokens,
        "num_to_sample": num_to_sample,
        "selected": selected,
        "per_target": per_target,
        "seed": seed,
        "top_k": top_k,
        "min_example_length": min_example_length,
        "thresholds": thresholds,
        "selection_seconds": round(time.time() - started, 3),
    }
    if num_tokens is not None:
        summary.update(num_tokens_to_sample=num_tokens, tokens_selected=tokens)
    if temperature != 1.0:
        summary["temperature"] = temperature
    if quota is not None and parts:
        summary["groups"] = summary_groups
    return selection, summary


def _group_totals(selected: DataFrame, column: str, shown: int = 100) -> dict[str, dict[str, int]]:
    """Documents and tokens of the selection per group (the largest ``shown`` groups)."""
    rows = (selected.groupBy(F.col(column).cast("string").alias("group"))
            .agg(F.count("*").alias("documents"), F.sum(NUM_TOKENS).alias("tokens"))
            .orderBy(F.desc("documents"), "group").limit(shown).collect())
    return {"null" if r["group"] is None else str(r["group"]): {"documents": int(r["documents"]),
                                                               "tokens": int(r["tokens"] or 0)} for r in rows}
