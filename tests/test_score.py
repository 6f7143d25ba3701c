"""Answer parsing and N × Pr(N), on token pieces as an engine returns them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erank.score import parse_answer


def pieces_of(text: str) -> list[str]:
    """Split like a Qwen tokenizer would at least do: every digit its own piece."""
    out: list[str] = []
    for ch in text:
        if ch.isdigit() or not out or out[-1][-1:].isdigit():
            out.append(ch)
        else:
            out[-1] += ch
    return out


def test_single_digit_probability_is_its_token() -> None:
    pieces = ["<think>", "fine", "</think>", "<answer>", "7", "</answer>"]
    lps = [-0.1, -0.2, -0.3, -0.4, math.log(0.6), -0.5]
    parsed = parse_answer(pieces, lps)
    assert parsed.answer == 7
    assert parsed.probability == pytest.approx(0.6)
    assert parsed.rank_score == pytest.approx(4.2)
    assert parsed.reasoning == "<think>fine</think>"


def test_ten_is_the_product_of_two_tokens() -> None:
    pieces = ["</think>", "<answer>", "1", "0", "</answer>"]
    parsed = parse_answer(pieces, [0.0, 0.0, math.log(0.9), math.log(0.5), 0.0])
    assert parsed.answer == 10
    assert parsed.probability == pytest.approx(0.45)
    assert parsed.rank_score == pytest.approx(4.5)


def test_last_answer_counts_and_whitespace_is_allowed() -> None:
    pieces = ["</think>", "<answer>", "3", "</answer>", " <answer> ", "8", " </answer>"]
    parsed = parse_answer(pieces, [0.0, 0.0, 0.0, 0.0, 0.0, math.log(0.25), 0.0])
    assert (parsed.answer, parsed.probability) == (8, pytest.approx(0.25))


def test_an_answer_quoted_inside_the_reasoning_is_not_the_answer() -> None:
    # The prompt's format line shows <answer>…</answer>; a model may restate it while thinking.
    text = "<think>format: <answer>9</answer>, so</think><answer>2</answer><|im_end|>"
    pieces = pieces_of(text)
    lps = [math.log(0.3) if p == "2" else -0.05 for p in pieces]
    parsed = parse_answer(pieces, lps)
    assert (parsed.answer, parsed.probability) == (2, pytest.approx(0.3))


def test_no_answer_without_closing_the_reasoning() -> None:
    pieces = pieces_of("<think>the answer is <answer>9</answer> I think")
    parsed = parse_answer(pieces, [-0.1] * len(pieces))
    assert parsed.answer is None
    assert "no </think>" in parsed.detail


def test_forced_budget_close_reads_the_answer_after_it() -> None:
    # Thinking budget: the engine forces "</think><answer>" after the model opened its own tag.
    pieces = pieces_of("<think>hm <answer>7</think><answer>3</answer>")
    parsed = parse_answer(pieces, [-0.1] * len(pieces))
    assert parsed.answer == 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<think>no closing tag<answer>7", "no </think>"),
        ("</think><answer>7", "no <answer>"),
        ("</think><answer>eleven</answer>", "not an integer"),
        ("</think><answer>11</answer>", "not an integer"),
        ("</think><answer>-1</answer>", "not an integer"),
        ("</think><answer>7.5</answer>", "not an integer"),
        ("</think><answer></answer>", "not an integer"),
        ("just text", "no </think>"),
    ],
)
def test_unparsable_scores_zero_and_says_why(text: str, reason: str) -> None:
    pieces = pieces_of(text)
    parsed = parse_answer(pieces, [-0.1] * len(pieces))
    assert parsed.answer is None
    assert parsed.rank_score == 0.0
    assert reason in parsed.detail


def test_token_limit_is_named() -> None:
    parsed = parse_answer(["<think>", "and so on"], [0.0, 0.0], hit_token_limit=True)
    assert "max_new_tokens" in parsed.detail


def test_mismatched_lengths_are_a_bug_not_a_score() -> None:
    with pytest.raises(ValueError):
        parse_answer(["a"], [])


reasoning = st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=40)


@given(reasoning, st.integers(0, 10), st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2))
def test_any_valid_answer_round_trips(think: str, n: int, probs: list[float]) -> None:
    head = pieces_of(f"<think>{think}</think><answer>") if think else ["</think>", "<answer>"]
    digits = list(str(n))
    pieces = [*head, *digits, "</answer>"]
    lps = [-0.7] * len(head) + [math.log(p) for p in probs[: len(digits)]] + [-0.3]
    parsed = parse_answer(pieces, lps)
    assert parsed.answer == n
    assert parsed.probability == pytest.approx(math.prod(probs[: len(digits)]))
    assert 0.0 <= parsed.rank_score <= 10.0


@given(st.lists(st.text(max_size=6), max_size=30), st.data())
def test_never_raises_and_score_bounded(pieces: list[str], data: st.DataObject) -> None:
    lps = data.draw(st.lists(st.floats(-50, 0), min_size=len(pieces), max_size=len(pieces)))
    parsed = parse_answer(pieces, lps)
    assert 0.0 <= parsed.rank_score <= 10.0
    assert (parsed.answer is None) == bool(parsed.detail)
