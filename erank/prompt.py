"""The ERank prompt: one user message per (query, document), rendered by the model's chat template.

The wording lives in a versioned resource (``templates/<version>.txt``) so it can be corrected
without touching code; the version is reported by ``GetModelInfo`` and belongs in every cache key.
Query and document are cut by the model's tokenizer (never by characters) *before* they are put
in the prompt, as the paper does. Instruction and query come first, so the prompts of one request
share a prefix that the engine's prefix cache serves once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

TEMPLATE_VERSION = "erank-v1"
# Score-only mode: the assistant turn starts with an empty think block (Qwen3's own non-thinking
# form) and an open answer tag, so the next token is the answer.
SCORE_ONLY_SUFFIX = "<think>\n\n</think>\n\n<answer>"
DEFAULT_INSTRUCTION = "Retrieve relevant documents for the query."


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def __call__(self, text: list[str], *, add_special_tokens: bool) -> Any: ...
    def decode(self, token_ids: Sequence[int]) -> str: ...
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@cache
def load_template(version: str = TEMPLATE_VERSION) -> str:
    """The template text for ``version``, with ``{instruction}``, ``{query}``, ``{document}``."""
    path = resources.files("erank") / "templates" / f"{version}.txt"
    if not path.is_file():
        raise ValueError(f"unknown prompt template version {version!r}")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Truncated:
    text: str
    truncated: bool


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt as token ids, and whether its query or document was cut."""

    token_ids: list[int]
    truncated: bool


def truncate(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> list[Truncated]:
    """Cut each text to its first ``max_tokens`` tokens.

    The kept tokens are decoded back to text; a character split across the cut (byte-level BPE
    can split one) is dropped rather than turned into a replacement character, so the result is
    always a prefix of the input.
    """
    out = [Truncated(t, False) for t in texts]
    # Every token spells at least one byte, so a text of at most max_tokens bytes fits as is;
    # only longer texts are tokenized here (the whole prompt is tokenized anyway).
    longer = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) > max_tokens]
    if not longer:
        return out
    encoded = tokenizer([texts[i] for i in longer], add_special_tokens=False)["input_ids"]
    for i, ids in zip(longer, encoded, strict=True):
        if len(ids) > max_tokens:
            kept = tokenizer.decode(ids[:max_tokens])
            while kept and not texts[i].startswith(kept):
                kept = kept[:-1]
            out[i] = Truncated(kept, True)
    return out


class PromptBuilder:
    """Builds the token ids of every prompt of a request."""

    def __init__(self, tokenizer: Tokenizer, template_version: str = TEMPLATE_VERSION) -> None:
        self.tokenizer = tokenizer
        self.template_version = template_version
        self.template = load_template(template_version)

    def message(self, instruction: str, query: str, document: str) -> str:
        """The user message for one pair (texts already truncated)."""
        return self.template.format(instruction=instruction, query=query, document=document)

    def build(
        self,
        instruction: str,
        query: str,
        documents: Sequence[str],
        truncate_length: int,
        suffix: str = "",
    ) -> list[Prompt]:
        """One prompt per document, in input order; ``suffix`` starts the assistant's turn."""
        (q,) = truncate(self.tokenizer, [query], truncate_length)
        docs = truncate(self.tokenizer, documents, truncate_length)
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.message(instruction, q.text, d.text)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            + suffix
            for d in docs
        ]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [Prompt(list(t), q.truncated or d.truncated) for t, d in zip(ids, docs, strict=True)]
