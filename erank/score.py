"""The ERank scoring rule: read ``<answer>N</answer>`` from a generation, rank_score = N × Pr(N).

The answer is the last ``<answer>…</answer>`` after the last ``</think>``: the prompt's output-
format line shows ``<answer>…</answer>`` and a reasoning model may quote it while thinking, so a
tag inside the reasoning is never the answer, and a generation that never closes its reasoning
has none.

Pr(N) is the probability the model gave the token(s) that spell N, taken from the engine's
logprobs of the sampled tokens (never recomputed). Qwen tokenizers write each digit as one token,
so "10" is the product of two. A generation without a parsable answer is not a request error:
it scores 0 and says why. This module is the only copy of the rule in the repository; the
score-only fast mode reads the same N × Pr(N) from one step's digit logprobs instead of a
generated answer (``score_only_answer``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ANSWER = 10
ANSWER_CLOSE = "</answer>"
THINK_CLOSE = "</think>"
# The content may not open another <answer>: after a forced "</think><answer>" (thinking budget)
# "<answer>7</think><answer>3</answer>" reads 3, the answer written after the last opening tag.
_ANSWER = re.compile(r"<answer>((?:(?!<answer>).)*?)</answer>", re.DOTALL)
_INTEGER = re.compile(r"\s*(\d+)\s*")


@dataclass(frozen=True)
class ParsedAnswer:
    """What one generation says: the answer (None when unparsable) and its probability."""

    answer: int | None
    probability: float
    reasoning: str
    detail: str = ""

    @property
    def rank_score(self) -> float:
        """N × Pr(N); 0 without a parsable answer."""
        return 0.0 if self.answer is None else self.answer * self.probability


def parse_answer(
    pieces: Sequence[str], logprobs: Sequence[float], hit_token_limit: bool = False
) -> ParsedAnswer:
    """Parse one generation given as per-token text pieces and the sampled tokens' logprobs.

    The last ``<answer>…</answer>`` after the last ``</think>`` counts. Its content must be an
    integer 0..10 (surrounding whitespace allowed). ``hit_token_limit`` only sharpens the reason
    given when none is found.
    """
    if len(pieces) != len(logprobs):
        raise ValueError(f"{len(pieces)} token pieces but {len(logprobs)} logprobs")
    text = "".join(pieces)
    think_end = text.rfind(THINK_CLOSE)
    matches = [] if think_end < 0 else list(_ANSWER.finditer(text, think_end))
    if not matches:
        missing = THINK_CLOSE if think_end < 0 else ANSWER_CLOSE
        why = (
            f"generation reached max_new_tokens ({len(pieces)}) before {missing}"
            if hit_token_limit
            else f"no {THINK_CLOSE} in the generated text"
            if think_end < 0
            else f"no <answer>…{ANSWER_CLOSE} after {THINK_CLOSE}"
        )
        return ParsedAnswer(None, 0.0, text, why)
    match = matches[-1]
    reasoning = text[: match.start()].strip()
    number = _INTEGER.fullmatch(match.group(1))
    if number is None or int(number.group(1)) > MAX_ANSWER:
        return ParsedAnswer(
            None, 0.0, reasoning, f"answer {match.group(1)!r} is not an integer 0..{MAX_ANSWER}"
        )
    start, end = number.span(1)
    start += match.start(1)
    end += match.start(1)
    logprob, offset = 0.0, 0
    for piece, lp in zip(pieces, logprobs, strict=True):
        if offset < end and offset + len(piece) > start:
            logprob += lp
        offset += len(piece)
    return ParsedAnswer(int(number.group(1)), math.exp(logprob), reasoning)


def best_digit(digit_logprobs: Sequence[float]) -> int:
    """The most likely of the ten digit tokens (ties: the smaller digit)."""
    if len(digit_logprobs) != 10:
        raise ValueError(f"need the logprobs of the 10 digit tokens, got {len(digit_logprobs)}")
    return max(range(10), key=lambda d: (digit_logprobs[d], -d))


def score_only_answer(
    digit_logprobs: Sequence[float], ten_logprob: float | None = None
) -> ParsedAnswer:
    """Score-only mode: the answer read from the step right after ``<answer>``.

    ``digit_logprobs[d]`` is the logprob of the token "d" there. The answer is the most likely
    digit and Pr(N) that token's probability. When that digit is 1 and greedy decoding continues
    with "0", the answer is 10 and Pr(N) = P("1") × P("0" | "1"): ``ten_logprob`` is the logprob
    of that "0" (None when the next greedy token is not "0"). So N and Pr(N) are what a full
    generation from the same prefix would report, restricted to digits at the first step.
    """
    d = best_digit(digit_logprobs)
    if d == 1 and ten_logprob is not None:
        return ParsedAnswer(10, math.exp(digit_logprobs[1] + ten_logprob), "")
    return ParsedAnswer(d, math.exp(digit_logprobs[d]), "")
