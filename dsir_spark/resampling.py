"""Distributed weighted resampling: exactly k documents by Gumbel top-k, reproducible at any scale.

Sampling k documents without replacement with probabilities proportional to exp(log_weight) is the
same as keeping the k largest keys ``log_weight + Gumbel noise`` (Gumbel top-k); everything stays in
log space. The noise of a document comes from a hash of (seed, target, id), so the selection is a
function of the data and the settings alone. Ties are broken by id (ascending).

The exact global top-k avoids a full sort: approximate quantiles bracket the k-th key, a count
checks the bracket, and the bracket shrinks until at most ``BAND_LIMIT`` rows remain in it; those
few are sorted on the driver to find the boundary (key, id). The selection is then a filter, so
driver memory does not grow with N or k.
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
_RELATIVE_ERROR = 1e-4


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


def _counts_around(band: DataFrame, low: float, high: float) -> tuple[int, int]:
    row = band.agg(
        F.count(F.when(F.col(KEY) > F.lit(high), 1)).alias("above"),
        F.count(F.when(F.col(KEY) >= F.lit(low), 1)).alias("at_least_low"),
    ).first()
    return int(row["above"]), int(row["at_least_low"])


def _boundary_of_ties(band: DataFrame, need: int) -> Boundary:
    """All keys in the band are equal: the boundary is the need-th smallest id, found distributedly."""
    row = band.orderBy(F.col(ID).asc()).limit(need).agg(F.max(ID).alias("ident"), F.max(KEY).alias("key")).first()
    return Boundary(row["key"], row["ident"])


def top_k_boundary(keys: DataFrame, k: int, total: int) -> Boundary:
    """The boundary of the k largest keys (ties by ascending id) among ``total`` rows, 1 <= k <= total."""
    band, need, band_size = keys.select(ID, KEY), k, total
    delta = 4 * _RELATIVE_ERROR
    while band_size > BAND_LIMIT:
        q = 1.0 - need / band_size
        margin = max(delta, 2.0 / band_size)
        low, high = band.approxQuantile(KEY, [max(0.0, q - margin), min(1.0, q + margin)], _RELATIVE_ERROR)
        if low == high and band.where(F.col(KEY) != F.lit(low)).limit(1).count() == 0:
            return _boundary_of_ties(band, need)
        above, at_least_low = _counts_around(band, low, high)
        if above < need <= at_least_low:
            band = band.where((F.col(KEY) >= F.lit(low)) & (F.col(KEY) <= F.lit(high)))
            need, band_size = need - above, at_least_low - above
            log.debug("top-k band narrowed to %d rows, %d still to pick", band_size, need)
        else:
            delta *= 4  # the quantile sketch missed; widen and try again
    rows = sorted(band.collect(), key=lambda r: (-r[KEY], r[ID]))
    chosen = rows[need - 1]
    return Boundary(chosen[KEY], chosen[ID])


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
    long_enough = F.col(NUM_TOKENS) >= F.lit(min_example_length)
    eligible = scores.where(long_enough)
    sizes = scores.agg(F.count("*").alias("total"), F.count(F.when(long_enough, 1)).alias("eligible")).first()
    total, eligible_count = int(sizes["total"]), int(sizes["eligible"])
    if num_to_sample > eligible_count:
        raise ResampleError(
            f"resample.num_to_sample={num_to_sample} but only {eligible_count} of {total} documents are eligible "
            f"(at least min_example_length={min_example_length} tokens); lower num_to_sample or min_example_length"
        )
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
