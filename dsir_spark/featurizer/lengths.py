"""Length-aware log weights. A DSIR log weight is a sum over a document's n-grams, so its size grows
with the document's length and the ranking follows length as much as content. Two corrections:

- ``poisson`` (RedPajama-V2): add log Pois(n; lambda_target) - log Pois(n; lambda_raw), n the document's
  token count and lambda each side's mean tokens per document. The log n! terms cancel, leaving
  n * (log lambda_target - log lambda_raw) - (lambda_target - lambda_raw): the weight of a length model
  fitted to each side, so a document's length counts as evidence once, not once per n-gram.
- ``mean``: the log weight per token, log_weight / n (0 for a document without tokens).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

NONE, POISSON, MEAN = "none", "poisson", "mean"


def mean_tokens(stats: Mapping[str, int]) -> float:
    """Mean tokens per document of a dataset's count stats (null texts are not documents here)."""
    documents = stats["documents"] - stats.get("null_texts", 0)
    if documents <= 0 or stats["tokens"] <= 0:
        raise ValueError(f"no tokens to estimate a mean document length from ({dict(stats)})")
    return stats["tokens"] / documents


def corrected_column(weight_col: str, correction: str) -> str:
    """The name of a corrected log-weight column: ``log_weight_poisson``, ``log_weight_0_mean``..."""
    return weight_col if correction == NONE else f"{weight_col}_{correction}"


def correct(log_weights: np.ndarray, num_tokens: np.ndarray, correction: str,
            lambda_target: float = 1.0, lambda_raw: float = 1.0) -> np.ndarray:
    """The corrected log weights (float64) of documents with ``num_tokens`` tokens."""
    n = num_tokens.astype(np.float64)
    if correction == POISSON:
        return log_weights + (n * (math.log(lambda_target) - math.log(lambda_raw)) - (lambda_target - lambda_raw))
    if correction == MEAN:
        return np.divide(log_weights, n, out=np.zeros_like(log_weights, dtype=np.float64), where=n > 0)
    if correction == NONE:
        return log_weights
    raise ValueError(f"unknown length correction {correction!r}")
