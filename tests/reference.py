"""Runs the reference package (data-selection 1.0.3), the oracle for parity tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ReferenceRun:
    dsir: object
    log_weights: np.ndarray  # one row per raw document in file order (columns = targets when separate)
    lengths: np.ndarray


def run_reference(raw: list[str], targets: list[str], cache_dir: Path, text_field: str = "contents",
                  **kwargs) -> ReferenceRun:
    from data_selection import HashedNgramDSIR

    parse = lambda ex: ex[text_field]  # noqa: E731
    dsir = HashedNgramDSIR(
        raw, targets, str(cache_dir), raw_parse_example_fn=parse, target_parse_example_fn=parse,
        num_proc=1, **kwargs,
    )
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    weights = np.concatenate([np.load(cache_dir / "log_importance_weights" / f"{i}.npy") for i in range(len(raw))])
    lengths = np.concatenate([np.load(cache_dir / "perexample_metadata" / f"{i}.npy") for i in range(len(raw))])
    return ReferenceRun(dsir, weights, lengths)
