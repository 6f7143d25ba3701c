"""Scores below the rank window (connector/rewrite/hits.py): the Java processor's rule, so the
proxy, the client wrappers and the OpenSearch plugin order a page that crosses the window's edge
alike."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from connector.rewrite.hits import below_window_score


def test_the_java_processors_examples() -> None:
    """ErankRerankProcessorTest.belowWindowScoreStaysBelowEvenWhereFloatsCannotStepByOne."""
    assert below_window_score(-0.5, 0) == -1.5
    assert below_window_score(-0.5, 2) == -3.5
    assert below_window_score(3e38, 0) < 3e38


@given(st.floats(-1e300, 1e300), st.integers(0, 10_000))
def test_strictly_below_the_lowest_reranked_score(lowest: float, distance: int) -> None:
    score = below_window_score(lowest, distance)
    assert math.isfinite(score) and score < lowest
    if lowest - 1.0 - distance < lowest:
        assert score == lowest - 1.0 - distance


@given(st.floats(-1e6, 1e6), st.integers(0, 1000))
def test_each_hit_further_down_scores_lower(lowest: float, distance: int) -> None:
    assert below_window_score(lowest, distance + 1) < below_window_score(lowest, distance)
