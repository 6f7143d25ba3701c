"""Hybrid fusion of ERank scores with first-stage scores (paper appendix G, model card).

For the documents of one request: z-score each list (mean 0, population standard deviation 1),
then hybrid = alpha × z(first_stage) + (1 − alpha) × z(rank_score). A list whose scores are all
equal has no spread: its z-scores are 0 (no division by zero, no NaN). The only copy in the
repository; adapters reach it through the gRPC contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_ALPHA = 0.2


def zscores(values: Sequence[float]) -> np.ndarray:
    """Population z-scores; all zeros when every value is the same."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or np.all(x == x[0]):
        return np.zeros_like(x)
    x = x / np.abs(x).max()  # z-scores ignore scale; this keeps huge inputs from overflowing
    return (x - x.mean()) / x.std()


def hybrid_scores(
    first_stage: Sequence[float], rank_scores: Sequence[float], alpha: float = DEFAULT_ALPHA
) -> list[float]:
    """alpha × z(first_stage) + (1 − alpha) × z(rank_scores), element-wise."""
    if len(first_stage) != len(rank_scores):
        raise ValueError(
            f"{len(first_stage)} first-stage scores but {len(rank_scores)} rank scores"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fused = alpha * zscores(first_stage) + (1.0 - alpha) * zscores(rank_scores)
    return [float(v) for v in fused]
