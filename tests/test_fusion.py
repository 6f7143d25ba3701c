"""Hybrid fusion: the model card's numbers, and properties any fused list must have."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from erank.fusion import hybrid_scores, zscores

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
score_lists = st.lists(finite, min_size=1, max_size=30)


def test_model_card_example() -> None:
    # ERank model card: "I am happy" → excited / peaceful / sad, BM25-like 46.7 / 2.3 / 1.5.
    hybrid = hybrid_scores([46.7, 2.3, 1.5], [4.84, 2.98, 0.0], alpha=0.2)
    assert [round(h, 2) for h in hybrid] == [1.18, 0.01, -1.19]


def test_alpha_extremes_select_one_list() -> None:
    first, rank = [3.0, 1.0, 2.0], [0.0, 9.0, 4.5]
    assert np.argsort(hybrid_scores(first, rank, 1.0)).tolist() == np.argsort(first).tolist()
    assert np.argsort(hybrid_scores(first, rank, 0.0)).tolist() == np.argsort(rank).tolist()


def test_rejects_alpha_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="alpha"):
        hybrid_scores([1.0], [1.0], 1.5)


@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=30), st.floats(0, 1), st.randoms())
def test_permutation_invariant(pairs: list[tuple[float, float]], alpha: float, rnd) -> None:  # type: ignore[no-untyped-def]
    first, rank = [p[0] for p in pairs], [p[1] for p in pairs]
    order = list(range(len(pairs)))
    rnd.shuffle(order)
    fused = hybrid_scores(first, rank, alpha)
    shuffled = hybrid_scores([first[i] for i in order], [rank[i] for i in order], alpha)
    assert shuffled == pytest.approx([fused[i] for i in order], abs=1e-9)


@given(score_lists)
def test_zscores_finite_centred_unit(values: list[float]) -> None:
    z = zscores(values)
    assert all(math.isfinite(v) for v in z)
    if len(set(values)) > 1:
        assert float(z.mean()) == pytest.approx(0.0, abs=1e-9)
        assert float(z.std()) == pytest.approx(1.0, abs=1e-9)


@given(finite, st.integers(1, 30))
def test_equal_scores_give_zero(value: float, n: int) -> None:
    assert zscores([value] * n).tolist() == [0.0] * n


@given(score_lists, st.floats(0, 1))
def test_hybrid_finite_and_order_preserving_in_each_list(values: list[float], alpha: float) -> None:
    fused = hybrid_scores(values, values, alpha)  # same list twice: fusion keeps its order
    assert all(math.isfinite(v) for v in fused)
    for (a, fa), (b, fb) in itertools.pairwise(zip(values, fused, strict=True)):
        if a < b:
            assert fa <= fb
