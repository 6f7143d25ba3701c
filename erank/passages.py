"""Long documents by their best passage (``LONG_DOCUMENTS_BEST_PASSAGE``).

The reference cuts every document to ``truncate_length`` tokens, so an answer past the first
2048 tokens is never read. Here a long document is cut into passages of ``truncate_length``
tokens of the model's own tokenizer (neighbours share ``overlap`` tokens); every passage is
scored with its own prompt, and the document takes the best passage's outcome. The prompts of
one request share the instruction-and-query prefix, so vLLM's prefix cache computes it once.

Passage boundaries come from the tokenizer's offset mapping, so a passage's characters are
exactly ``text[start_char:end_char]`` of the text the caller sent (no re-decoding, no
normalisation). A document that fits one passage is sent as it is: its prompt, and so its score
and cache entry, are those of truncation mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from erank.ranking import CompletionName, Scored
from erank.validation import InvalidRequest, Violation
from erank_contract.v1 import reranker_pb2 as pb


def spans(tokenizer: Any, text: str, length: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of ``text``'s passages of ``length`` tokens, ``overlap`` shared.

    A text of at most ``length`` UTF-8 bytes cannot have more than ``length`` tokens, so it is
    one passage without tokenizing it.
    """
    if len(text.encode("utf-8")) <= length:
        return [(0, len(text))]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets: list[tuple[int, int]] = encoded["offset_mapping"]
    if len(offsets) <= length:
        return [(0, len(text))]
    out = []
    stride = length - overlap
    for first in range(0, len(offsets), stride):
        last = min(first + length, len(offsets)) - 1
        out.append((offsets[first][0], offsets[last][1]))
        if last == len(offsets) - 1:
            break
    return out


def split(
    tokenizer: Any,
    texts: Sequence[str],
    length: int,
    overlap: int,
    per_document: int,
    per_request: int,
) -> list[list[tuple[int, int]]]:
    """Each document's passage spans; ``InvalidRequest`` over either cap, naming the setting."""
    out = [spans(tokenizer, t, length, overlap) for t in texts]
    bad = [
        Violation(
            f"documents[{i}]",
            f"splits into {len(s)} passages of {length} tokens (overlap {overlap}); the limit "
            f"is {per_document} (max_passages_per_document): raise truncate_length",
        )
        for i, s in enumerate(out)
        if len(s) > per_document
    ]
    total = sum(len(s) for s in out)
    if total > per_request:
        bad.append(
            Violation(
                "documents",
                f"split into {total} passages; the limit is {per_request} "
                "(max_passages_per_request)",
            )
        )
    if bad:
        raise InvalidRequest(bad[:20])
    return out


def best(passages: Sequence[Scored], places: Sequence[tuple[int, int]]) -> Scored:
    """The document's outcome: its best passage's (highest rank score, an answer before none,
    then the earliest), with ``passage`` saying which one won and where it is."""
    k = max(
        range(len(passages)),
        key=lambda j: (passages[j].parsed.rank_score, passages[j].parsed.answer is not None, -j),
    )
    start, end = places[k]
    where = pb.Passage(index=k, start_char=start, end_char=end, count=len(passages))
    s = passages[k]
    completions = {p.completion for p in passages}
    completion: CompletionName = (
        "unscored" if completions == {"unscored"} else "full" if completions == {"full"} else "cut"
    )
    cached = all(p.cached for p in passages)
    return Scored(s.parsed, s.truncation, s.mode, cached, where, completion, s.thinking_tokens)
