"""Hybrid fusion of ERank scores with first-stage scores: the one place every method lives.

Three methods, chosen per request (``RerankRequest.fusion``); ``alpha`` is the first stage's
weight in all of them, so alpha 1 orders by the first stage and alpha 0 by ERank:

* ``zscore`` (the paper's appendix G and the model card, the default): z-score each list (mean 0,
  population standard deviation 1), then alpha × z(first_stage) + (1 − alpha) × z(rank_score). A
  list whose scores are all equal has no spread: its z-scores are 0 (no division by zero, no NaN).
* ``minmax``: alpha × mm(first_stage) + (1 − alpha) × mm(rank_score) with
  mm(s) = (s − min) / (max − min), the normaliser of Elasticsearch's ``linear`` retriever, so a
  hybrid built here and one built there agree. Like Elasticsearch, a list whose scores are all
  within 1e-6 of each other (one document included) normalises to 1 for every document.
* ``rrf``: weighted reciprocal rank fusion, alpha / (k + r_first) + (1 − alpha) / (k + r_erank),
  ranks 1-based by descending score, k = ``rank_constant`` (60, RRF's usual constant). Equal
  scores share the best rank of their group (competition ranking: 1, 2, 2, 4), so the fused
  score never depends on input order. With alpha 0.5 it is half of plain RRF: the same order.

Adapters reach this module through the gRPC contract only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from erank_contract.vocabulary import FUSION_METHODS, FusionName

DEFAULT_ALPHA = 0.2
DEFAULT_RANK_CONSTANT = 60
MINMAX_EPSILON = 1e-6  # Elasticsearch's MinMaxScoreNormalizer: closer than this is "equal"


def zscores(values: Sequence[float]) -> np.ndarray:
    """Population z-scores; all zeros when every value is the same."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or np.all(x == x[0]):
        return np.zeros_like(x)
    x = x / np.abs(x).max()  # z-scores ignore scale; this keeps huge inputs from overflowing
    return (x - x.mean()) / x.std()


def minmax(values: Sequence[float]) -> np.ndarray:
    """(s − min) / (max − min) in [0, 1]; all ones when max − min < 1e-6 (Elasticsearch's rule)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    low, high = x.min(), x.max()
    if float(high) - float(low) < MINMAX_EPSILON:  # inf for a huge spread: never "equal"
        return np.ones_like(x)
    scale = np.abs(x).max()  # scaling first keeps high − low finite for huge inputs
    y = x / scale
    return (y - low / scale) / (high / scale - low / scale)


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks by descending value; equal values share their group's best rank."""
    negated = -np.asarray(values, dtype=np.float64)
    # how many values are strictly greater, plus one
    return 1 + np.searchsorted(np.sort(negated), negated, side="left")


_NORMALISERS: dict[str, Callable[[Sequence[float]], np.ndarray]] = {
    "zscore": zscores,
    "minmax": minmax,
}


def hybrid_scores(
    first_stage: Sequence[float],
    rank_scores: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    method: FusionName = "zscore",
    rank_constant: int = DEFAULT_RANK_CONSTANT,
) -> list[float]:
    """The fused score of each document (higher is better), element-wise."""
    if len(first_stage) != len(rank_scores):
        raise ValueError(
            f"{len(first_stage)} first-stage scores but {len(rank_scores)} rank scores"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if method == "rrf":
        if rank_constant < 1:
            raise ValueError(f"rank_constant must be at least 1, got {rank_constant}")
        k = float(rank_constant)
        fused = alpha / (k + ranks(first_stage)) + (1.0 - alpha) / (k + ranks(rank_scores))
    elif method in _NORMALISERS:
        normalise = _NORMALISERS[method]
        fused = alpha * normalise(first_stage) + (1.0 - alpha) * normalise(rank_scores)
    else:
        raise ValueError(f"unknown fusion method {method!r}; known: {', '.join(FUSION_METHODS)}")
    return [float(v) for v in fused]
