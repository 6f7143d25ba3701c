"""Reading a generation: the answer and its probability, the reasoning's length, the digits.

The rule itself (last ``<answer>N</answer>`` after the last ``</think>``, N × Pr(N)) lives in
:mod:`erank.score`; this is the tokenizer side of it, kept per scoring server: which token ids
spell ``</think>``, the digits and the forced closing, and each token's text, decoded once.
"""

from __future__ import annotations

from typing import Any

from erank.backends.base import THINK_END, Generation
from erank.score import ANSWER_CLOSE, MAX_ANSWER, THINK_CLOSE, ParsedAnswer, parse_answer
from erank.validation import InvalidRequest, Violation


class AnswerReader:
    """Reads generations of one model's tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._digits: list[int] | None = None
        self._think_close = _single_token(tokenizer, THINK_CLOSE)
        # Forced after a stopped reasoning (erank/anytime.py) or a spent thinking budget.
        self.close_ids: list[int] = tokenizer.encode(THINK_END, add_special_tokens=False)
        self._answer_close: list[int] = tokenizer.encode(ANSWER_CLOSE, add_special_tokens=False)
        self._piece_of: dict[int, str] = {}

    def parse(self, generation: Generation, with_reasoning: bool = False) -> ParsedAnswer:
        """Read the answer of one generation (token pieces from the model's tokenizer).

        The answer counts only after the last ``</think>``: unless the reasoning is wanted, only
        the tokens from the last ``</think>`` token on are decoded (decoding every token of
        ~400-token reasoning chains for 100 documents costs more than the rest of the request's
        Python). A tokenizer without a one-token ``</think>`` decodes everything.
        """
        ids, logprobs = generation.token_ids, generation.logprobs
        start = 0
        if not with_reasoning and self._think_close is not None:
            start = _last_index(ids, self._think_close)
        pieces = self._pieces(ids[start:])
        return parse_answer(pieces, logprobs[start:], generation.hit_token_limit)

    def _pieces(self, ids: list[int]) -> list[str]:
        """Each token's text on its own, decoded once per token id and kept (at most the
        vocabulary): a tokenizer call per generation cost more than the parse itself."""
        pieces = self._piece_of
        new = list({t for t in ids if t not in pieces})
        if new:
            decoded = self.tokenizer.batch_decode([[t] for t in new], skip_special_tokens=False)
            pieces.update(zip(new, decoded, strict=True))
        return [pieces[t] for t in ids]

    def answered(self, answer: Generation) -> Generation:
        """A closing's answer (the tokens after a forced ``<answer>``) through its digits and a
        ``</answer>`` the model need not write, once the digits are known complete: another
        token followed them, or they spell the most an answer can have. Otherwise as it came
        (then it parses only if the model wrote the whole tag itself)."""
        pieces = self._pieces(answer.token_ids)
        first = 0
        while first < len(pieces) and pieces[first].isspace():
            first += 1
        end = first
        while end < len(pieces) and pieces[end].isdigit():
            end += 1
        digits = "".join(pieces[first:end])
        if not digits or (end == len(pieces) and len(digits) < len(str(MAX_ANSWER))):
            return answer
        close = self._answer_close
        return Generation(
            token_ids=[*answer.token_ids[:end], *close],
            logprobs=[*answer.logprobs[:end], *[0.0] * len(close)],
            hit_token_limit=False,
            prompt_tokens=answer.prompt_tokens,
            cached_prompt_tokens=answer.cached_prompt_tokens,
            stopped=answer.stopped,
        )

    def thinking(self, g: Generation) -> int:
        """Tokens generated before the answer: up to the last ``</think>`` (all without one)."""
        if self._think_close is None or self._think_close not in g.token_ids:
            return len(g.token_ids)
        return _last_index(g.token_ids, self._think_close)

    def digit_ids(self) -> list[int]:
        """Token ids of "0".."9"; score-only mode needs each digit to be one token."""
        if self._digits is None:
            encode = self.tokenizer.encode
            ids = [encode(str(d), add_special_tokens=False) for d in range(10)]
            if any(len(t) != 1 for t in ids):
                raise InvalidRequest(
                    [Violation("mode", "score-only needs a tokenizer with one token per digit")]
                )
            self._digits = [int(t[0]) for t in ids]
        return self._digits


def _single_token(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when the tokenizer writes it as one token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def _last_index(ids: list[int], token: int) -> int:
    """Index of the last ``token`` in ``ids``; 0 when absent (decode all: nothing to skip)."""
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] == token:
            return i
    return 0
