"""The ERank prompt, exactly as the model card's reference code builds it.

Reference (``examples/utils.py`` of the model card): ``prompt_template.format(query=…, doc=…,
instruction=…)`` after cutting query and document with ``truncate``, sent as the only user
message through the model's chat template with ``add_generation_prompt=True``. The wording lives
in a versioned resource (``templates/<version>.txt``, byte for byte the reference
``prompt_template``); the version is reported by ``GetModelInfo`` and belongs in every cache key.

One deliberate departure: the texts a caller sends (instruction, query, documents) are tokenized
with special-token parsing off, so a document holding ``<|im_end|>`` gets that text's tokens, not
the end-of-turn control token: no document can close its own turn and write its own score. For
texts without control-token strings the token ids are the reference's (tested on the real Qwen3
tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from erank_contract.instructions import DEFAULT_INSTRUCTION

TEMPLATE_VERSION = "erank-v2"
# Score-only mode: the assistant turn starts with an empty think block (Qwen3's own non-thinking
# form) and an open answer tag, so the next token is the answer.
SCORE_ONLY_SUFFIX = "<think>\n\n</think>\n\n<answer>"
_MARK = "\x00erank-content\x00"  # stands for the user message while the chat frame is rendered


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def __call__(self, text: Any, **kwargs: Any) -> Any: ...
    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]: ...
    def convert_tokens_to_string(self, tokens: list[str]) -> str: ...
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@cache
def load_template(version: str = TEMPLATE_VERSION) -> str:
    """The template text for ``version``, with ``{instruction}``, ``{query}`` and ``{doc}``."""
    path = resources.files("erank") / "templates" / f"{version}.txt"
    if not path.is_file():
        raise ValueError(f"unknown prompt template version {version!r}")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Truncated:
    """A text as the reference ``truncate`` leaves it, and its token counts before and after."""

    text: str
    tokens: int  # tokens of the original text
    kept: int  # tokens kept (== tokens unless cut)

    @property
    def cut(self) -> bool:
        return self.kept < self.tokens


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt as token ids; ``truncation`` says what was cut ("" when nothing)."""

    token_ids: list[int]
    truncation: str = ""

    @property
    def truncated(self) -> bool:
        return bool(self.truncation)


def truncate(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> list[Truncated]:
    """The reference ``truncate`` of each text:
    ``tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens])``.

    The kept text need not be a prefix of the input (Qwen tokenizers normalise to NFC, and a cut
    through a multi-byte character decodes to U+FFFD, as in the reference). A text of at most
    ``max_tokens`` UTF-8 bytes cannot have more tokens than that, so it is not tokenized here:
    the reference would give back its NFC form, which the prompt's own tokenization produces
    anyway (the template puts line breaks around every text, so normalisation never crosses
    into it). ``Truncated.tokens`` of such a text is a lower bound, never reported as a cut.
    """
    out = [Truncated(t, 0, 0) for t in texts]
    longer = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) > max_tokens]
    if not longer:
        return out
    encoded = tokenizer([texts[i] for i in longer], add_special_tokens=False)["input_ids"]
    for i, ids in zip(longer, encoded, strict=True):
        if len(ids) > max_tokens:
            tokens = tokenizer.convert_ids_to_tokens(list(ids[:max_tokens]))
            out[i] = Truncated(tokenizer.convert_tokens_to_string(tokens), len(ids), max_tokens)
    return out


class PromptBuilder:
    """Builds the token ids of every prompt of a request."""

    def __init__(self, tokenizer: Tokenizer, template_version: str = TEMPLATE_VERSION) -> None:
        self.tokenizer = tokenizer
        self.template_version = template_version
        self.template = load_template(template_version)
        frame = tokenizer.apply_chat_template(
            [{"role": "user", "content": _MARK}], tokenize=False, add_generation_prompt=True
        )
        self.head, self.tail = frame.split(_MARK)
        self._head_ids = self._ids(self.head)
        self._check_frame()

    def message(self, instruction: str, query: str, document: str) -> str:
        """The user message for one pair (texts already truncated): the reference format."""
        return self.template.format(instruction=instruction, query=query, doc=document)

    def text(self, instruction: str, query: str, document: str, suffix: str = "") -> str:
        """The whole rendered prompt of one pair, as the chat template writes it."""
        return self.head + self.message(instruction, query, document) + self.tail + suffix

    def build(
        self,
        instruction: str,
        query: str,
        documents: Sequence[str],
        truncate_length: int,
        suffix: str = "",
    ) -> list[Prompt]:
        """One prompt per document, in input order; ``suffix`` starts the assistant's turn.

        The chat frame is rendered once per builder and tokenized apart from the message: the
        frame meets the message at special tokens and a line break, where the tokenizer splits
        anyway, so the ids equal those of the whole string (checked at start-up).
        """
        (q,) = truncate(self.tokenizer, [query], truncate_length)
        docs = truncate(self.tokenizer, documents, truncate_length)
        messages = [self.message(instruction, q.text, d.text) for d in docs]
        bodies = self.tokenizer(messages, add_special_tokens=False, split_special_tokens=True)
        tail = self._ids(self.tail + suffix)
        return [
            Prompt([*self._head_ids, *body, *tail], _truncation(q, d))
            for body, d in zip(bodies["input_ids"], docs, strict=True)
        ]

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _check_frame(self) -> None:
        """Refuse a chat template whose frame does not tokenize apart from the message."""
        sample = self.message(DEFAULT_INSTRUCTION, "query", "document")
        whole = self._ids(self.head + sample + self.tail)
        apart = self._head_ids + self._ids(sample) + self._ids(self.tail)
        if whole != apart:
            raise ValueError(
                f"template {self.template_version}: the chat template's frame merges with the "
                "message when tokenized; prompts cannot be built safely"
            )


def _truncation(query: Truncated, document: Truncated) -> str:
    parts = [
        f"{name} cut to {t.kept} of {t.tokens} tokens"
        for name, t in (("query", query), ("document", document))
        if t.cut
    ]
    return "; ".join(parts)
