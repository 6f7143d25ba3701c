"""Reading a closing's answer early (erank/reader.py ``answered``) on the real Qwen3 tokenizer,
and the waves closings go in (erank/anytime.py ``waves``).

A closing generates at most three tokens after ``</think><answer>`` (erank/anytime.py): the
digits and the token after them. Whatever the model writes after its digits, the reader's answer
must be the one the whole ``<answer>N</answer>`` would parse to, with the same probability; and
digits that may still go on (one digit, then nothing) are never read as an answer.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erank.anytime import CLOSE_MAX_TOKENS, waves
from erank.backends.base import THINK_END, Generation, load_tokenizer
from erank.qwen3_tokenizer import qwen3_tokenizer_dir
from erank.reader import AnswerReader

TAILS = ["</answer>", "</answer><|im_end|>", " </answer>", "\n", " because", "<"]


@pytest.fixture(scope="module")
def reader() -> AnswerReader:
    return AnswerReader(load_tokenizer(str(qwen3_tokenizer_dir()), None))


def generation(tokenizer: Any, text: str, logprobs: list[float] | None = None) -> Generation:
    ids = tokenizer.encode(text, add_special_tokens=False)
    lps = logprobs if logprobs is not None else [-0.1 * (i + 1) for i in range(len(ids))]
    return Generation(ids, lps[: len(ids)], False, 10, 0, stopped=True)


def read(reader: AnswerReader, answer: Generation) -> tuple[int | None, float]:
    """The answer after a forced closing, as the scorer reads it."""
    close = reader.close_ids
    whole = Generation(
        [*close, *answer.token_ids], [*[0.0] * len(close), *answer.logprobs], False, 10, 0
    )
    parsed = reader.parse(whole)
    return parsed.answer, parsed.probability


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10), st.sampled_from(TAILS), st.booleans())
def test_the_digits_and_one_token_after_read_as_the_whole_answer(
    reader: AnswerReader, n: int, tail: str, space: bool
) -> None:
    tokenizer = reader.tokenizer
    text = (" " if space else "") + f"{n}{tail}"
    whole = generation(tokenizer, text)
    digits = len(str(n)) + (1 if space else 0)
    seen = min(digits + 1, CLOSE_MAX_TOKENS)  # " 10" needs no fourth token: 10 is the most
    early = Generation(whole.token_ids[:seen], whole.logprobs[:seen], False, 10, 0, stopped=True)
    answer, probability = read(reader, reader.answered(early))
    assert answer == n
    first = 1 if space else 0
    assert probability == pytest.approx(math.exp(sum(whole.logprobs[first:digits])))
    if tail.startswith("</answer>"):  # what the model wrote itself reads the same
        assert read(reader, reader.answered(whole)) == read(reader, whole)


def test_digits_that_may_go_on_are_not_an_answer(reader: AnswerReader) -> None:
    """ "1" alone could be the start of "10": no answer until the next token says which."""
    one = generation(reader.tokenizer, "1")
    assert reader.answered(one) == one
    assert read(reader, one)[0] is None
    ten = generation(reader.tokenizer, "10")
    assert read(reader, reader.answered(ten))[0] == 10
    assert read(reader, reader.answered(generation(reader.tokenizer, "x7")))[0] is None


def test_the_closing_tokens_are_the_reference_ones(reader: AnswerReader) -> None:
    assert reader.tokenizer.decode(reader.close_ids) == THINK_END == "</think><answer>"


@given(st.lists(st.integers(), unique=True, max_size=300), st.integers(1, 16))
def test_closing_waves_take_every_document_once_best_first(items: list[int], first: int) -> None:
    """erank/anytime.py ``waves``: every document in exactly one wave, in the order given (best
    first-stage rank first), the first wave ``first`` documents, each later one twice the last."""
    got = waves(items, first)
    assert [k for wave in got for k in wave] == items
    sizes = [len(wave) for wave in got]
    assert all(sizes[i] == first * 2**i for i in range(len(sizes) - 1))
    assert all(0 < s <= first * 2**i for i, s in enumerate(sizes))
