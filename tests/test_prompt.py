"""Prompt building and token truncation, with the tiny checkpoint's real tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erank.backends.base import load_tokenizer
from erank.prompt import PromptBuilder, load_template, truncate
from erank_contract.instructions import DEFAULT_INSTRUCTION


@pytest.fixture(scope="module")
def tokenizer(random_checkpoint: Path) -> Any:
    return load_tokenizer(str(random_checkpoint), None)


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_template_is_the_reference_wording() -> None:
    template = load_template()
    assert template.startswith(
        "Given a query and a document, please give a relevance score of 0~10.\n"
    )
    assert template.index("{instruction}") < template.index("{query}") < template.index("{doc}")
    assert template.endswith("\n\nYour output:")  # no trailing newline
    with pytest.raises(ValueError, match="unknown prompt template"):
        load_template("no-such-version")


def test_prompt_is_rendered_by_the_chat_template(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer)
    (prompt,) = builder.build(DEFAULT_INSTRUCTION, "I am happy", ["excited"], 2048)
    text = tokenizer.decode(prompt.token_ids)
    assert text.startswith("<|im_start|>user\nGiven a query and a document")
    assert "Here is the query:\nI am happy\n\nHere is the document:\nexcited\n\n" in text
    assert text.endswith("Your output:<|im_end|>\n<|im_start|>assistant\n")
    assert not prompt.truncated


def test_prompts_of_a_request_share_the_instruction_and_query_prefix(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer)
    a, b = builder.build("Find sports news.", "who won the match", ["first doc", "other"], 2048)
    shared = 0
    while a.token_ids[shared] == b.token_ids[shared]:
        shared += 1
    prefix = tokenizer.decode(a.token_ids[:shared])
    assert "Find sports news." in prefix and "who won the match" in prefix


def test_long_document_is_cut_by_tokens_and_flagged(tokenizer: Any) -> None:
    builder = PromptBuilder(tokenizer)
    doc = "retrieval " * 500
    short, long_ = builder.build(DEFAULT_INSTRUCTION, "q", ["retrieval", doc], truncate_length=32)
    assert long_.truncated and not short.truncated
    full = builder.build(DEFAULT_INSTRUCTION, "q", [doc], truncate_length=2048)[0]
    assert len(long_.token_ids) < len(full.token_ids)


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.integers(1, 64))
def test_truncation_is_the_reference_rule(tokenizer: Any, text: str, limit: int) -> None:
    (cut,) = truncate(tokenizer, [text], limit)
    reference = tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:limit])
    n = count(tokenizer, text)
    assert cut.cut == (n > limit)
    if cut.cut:
        assert cut.text == reference
        assert (cut.kept, cut.tokens) == (limit, n)
    else:  # kept whole: the same tokens in the prompt as the reference's round trip
        assert count(tokenizer, cut.text) == count(tokenizer, reference) == n


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(texts, min_size=1, max_size=5), texts, st.integers(4, 64))
def test_one_prompt_per_document_in_order(
    tokenizer: Any, docs: list[str], query: str, limit: int
) -> None:
    builder = PromptBuilder(tokenizer)
    prompts = builder.build(DEFAULT_INSTRUCTION, query or "q", docs, limit)
    assert len(prompts) == len(docs)
    for doc, prompt in zip(docs, prompts, strict=True):
        (cut,) = truncate(tokenizer, [doc], limit)
        expected = builder.message(
            DEFAULT_INSTRUCTION, truncate(tokenizer, [query or "q"], limit)[0].text, cut.text
        )
        assert expected in tokenizer.decode(prompt.token_ids)
