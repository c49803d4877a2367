"""Distributed weighted resampling: exactly k documents by Gumbel top-k, reproducible at any scale.

Sampling k documents without replacement with probabilities proportional to exp(log_weight) is the
same as keeping the k largest keys ``log_weight + Gumbel noise`` (Gumbel top-k); everything stays in
log space. The noise of a document comes from a hash of (seed, target, id), so the selection is a
function of the data and the settings alone. Ties are broken by id (ascending).

The exact global top-k avoids a full sort: a hashed sample of the keys (at most ``SAMPLE_SIZE``)
brackets the k-th key, one pass counts the rows above the bracket and collects the rows inside it
(at most ``BAND_LIMIT``), which are sorted on the driver to find the boundary (key, id). A bracket
that missed, or holds too many rows, is narrowed or widened and tried again. The selection is then a
filter, so driver memory does not grow with N or k, and a typical run takes two passes over the keys.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dsir_spark.io import ID
from dsir_spark.model import NUM_TOKENS
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
    """The k-th largest (key, id): a row is selected iff (key, -id) >= (boundary key, -boundary id)."""

    key: float
    ident: Any

    def selects(self) -> Column:
        key, ident = F.col(KEY), F.col(ID)
        return (key > F.lit(self.key)) | ((key == F.lit(self.key)) & (ident <= F.lit(self.ident)))


def gumbel_keys(
    scores: DataFrame, weight_col: str, seed: int | Column, target: int, top_k: bool, noise_salt: str = "gumbel"
) -> DataFrame:
    """Adds ``key`` = log weight (+ Gumbel noise of (salt, seed, target, id) unless top_k)."""
    weight = F.col(weight_col)
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
    m = len(keys)
    if m == 0:
        return float("-inf"), float("inf"), float(band_size)
    rank = need * m / band_size  # where the need-th largest key falls among the sampled ones (1-based)
    width = spread * (rank * max(0.0, 1.0 - rank / m)) ** 0.5 + 1.0
    top, bottom = int(rank - width), int(rank + width) + 1
    high = keys[top - 1] if top >= 1 else float("inf")
    low = keys[bottom - 1] if bottom <= m else float("-inf")
    expected = (min(bottom, m + 1) - max(top, 0)) / m * band_size
    return low, high, expected


def top_k_boundary(keys: DataFrame, k: int, total: int) -> Boundary:
    """The boundary of the k largest keys (ties by ascending id) among ``total`` rows, 1 <= k <= total."""
    band, need, band_size = keys.select(ID, KEY), k, total
    spread, attempt = _SPREAD, 0
    while True:
        if band_size <= BAND_LIMIT:
            rows = sorted(band.collect(), key=lambda r: (-r[KEY], r[ID]))
            chosen = rows[need - 1]
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


def check_selectable(scores: DataFrame, weight_cols: list[str], num_to_sample: int,
                     min_example_length: int) -> tuple[int, int]:
    """(documents, eligible documents) of the scores, in one pass that also fails on weights that are not
    finite and on a num_to_sample above the eligible documents."""
    long_enough = F.col(NUM_TOKENS) >= F.lit(min_example_length)
    not_finite = [count for i, c in enumerate(weight_cols) for count in _not_finite_counts(c, i)]
    sizes = scores.agg(F.count("*").alias("total"), F.count(F.when(long_enough, 1)).alias("eligible"),
                       *not_finite).first()
    total, eligible_count = int(sizes["total"]), int(sizes["eligible"])
    for i, column in enumerate(weight_cols):
        _require_finite(sizes, column, i, total)
    if num_to_sample > eligible_count:
        raise ResampleError(
            f"resample.num_to_sample={num_to_sample} but only {eligible_count} of {total} documents are eligible "
            f"(at least min_example_length={min_example_length} tokens); lower num_to_sample or min_example_length"
        )
    return total, eligible_count


def split_across_targets(num_to_sample: int, proportions: list[float]) -> list[int]:
    """The reference's split: floor of k * p for each target, the remainder to the last."""
    per_target = [int(num_to_sample * p) for p in proportions]
    per_target[-1] += num_to_sample - sum(per_target)
    return per_target


def select(
    scores: DataFrame,
    weight_cols: list[str],
    num_to_sample: int,
    *,
    proportions: list[float] | None = None,
    min_example_length: int = 100,
    seed: int = 0,
    top_k: bool = False,
    noise_salt: str = "gumbel",
) -> tuple[DataFrame, dict[str, Any]]:
    """Selects exactly ``num_to_sample`` ids from scores (id, num_tokens, weight columns).

    Returns (id, key, log_weight, target) of the selection and a summary. With several weight columns
    (separate targets) k is split by ``proportions`` and each target picks from what earlier targets
    left, so no id is chosen twice. ``noise_salt`` gives a baseline noise independent of the selection's.
    """
    started = time.time()
    eligible = scores.where(F.col(NUM_TOKENS) >= F.lit(min_example_length))
    total, eligible_count = check_selectable(scores, weight_cols, num_to_sample, min_example_length)
    if len(weight_cols) > 1:
        even = [1.0 / len(weight_cols)] * len(weight_cols)
        per_target = split_across_targets(num_to_sample, list(proportions or even))
    else:
        per_target = [num_to_sample]
    remaining, remaining_count = eligible, eligible_count
    parts, thresholds = [], []
    for target, (weight_col, k) in enumerate(zip(weight_cols, per_target)):
        if k == 0:
            thresholds.append(None)
            continue
        keys = gumbel_keys(remaining, weight_col, seed, target, top_k, noise_salt)
        boundary = top_k_boundary(keys, k, remaining_count)
        chosen = keys.where(boundary.selects()).select(
            ID, KEY, F.col(weight_col).alias("log_weight"), F.lit(target).alias("target")
        )
        parts.append(chosen)
        thresholds.append({"key": boundary.key, "id": boundary.ident})
        remaining = remaining.join(chosen.select(ID), on=ID, how="left_anti")
        remaining_count -= k
    if parts:
        selection = parts[0]
        for part in parts[1:]:
            selection = selection.unionByName(part)
    else:  # num_to_sample = 0: an empty selection with the right schema
        selection = gumbel_keys(scores, weight_cols[0], seed, 0, top_k=True).where(F.lit(False)).select(
            ID, KEY, F.col(weight_cols[0]).alias("log_weight"), F.lit(0).alias("target")
        )
    summary = {
        "documents": total,
        "eligible": eligible_count,
        "num_to_sample": num_to_sample,
        "per_target": per_target,
        "seed": seed,
        "top_k": top_k,
        "min_example_length": min_example_length,
        "thresholds": thresholds,
        "selection_seconds": round(time.time() - started, 3),
    }
    return selection, summary
