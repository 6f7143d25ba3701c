"""Deadline-aware ("anytime") scoring: every document answered by the call's deadline.

ERank thinks before it answers (~410 generated tokens per document for ERank-4B), so a search
budget of a few hundred milliseconds usually ends before the reasoning does. Instead of failing
the whole call, the server stops every document still reasoning shortly before the deadline and
asks the engine for the answer given the thinking so far: the prompt, the tokens generated, then
``</think><answer>`` (the thinking-budget rule, at a budget the deadline chose). With prefix
caching that is a prefill of one partial block and a few decode steps. Each document then has
N × Pr(N) by the deadline, marked ``cut`` with its thinking length; one whose closing does not
finish either is ``unscored``, never dropped.

How long before the deadline to begin closing (the *margin*) is measured, not set:
:class:`ClosingCost` keeps the recent closings' durations under whatever load the server had,
and the margin is their 90th percentile with headroom, plus the time the server takes to fuse
and answer. A closing that overran (documents left unscored) counts double, so the next call
starts earlier. The server seeds it at warm-up with one real closing.

Priorities (vLLM's priority scheduling; lower first) put, when the engine is full, closings
before everything, then nearer deadlines, then better first-stage ranks; calls without a deadline
take their arrival plus a horizon, so they are served first come, first served among
themselves; background completions come last of all (:mod:`erank.background`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from erank import metrics
from erank.backends.base import Generation

# At most this many tokens after </think><answer>: the answer's digits ("10" is two Qwen3
# tokens) and the token after them, which says they are complete; the reader closes the tag
# (AnswerReader.answered), so a closing costs three decode steps, not the eight of the whole
# "10</answer><|im_end|>", and one stopped after its digits is still read.
CLOSE_MAX_TOKENS = 3
# Closings in waves of this many documents, then twice as many each time (``waves``): a page of
# results is closed first.
FIRST_WAVE = 10
# A call without a deadline is ordered as if it had one this far after its arrival.
NO_DEADLINE_HORIZON_S = 60.0
_RANKS = 1024  # first-stage ranks told apart within one deadline (the window is smaller)
_CLOSING_BASE = 0  # closings: ordered by deadline, before every generation
_GENERATION_BASE = 1 << 40  # milliseconds: after every closing
BACKGROUND_PRIORITY = 1 << 62  # last of all
_EPOCH = time.monotonic()


def call_deadline(received: float, budget_ms: int, time_remaining: float | None) -> float | None:
    """The call's deadline (``time.monotonic()``): the nearer of ``budget_ms`` after
    ``received`` and the gRPC deadline (``time_remaining`` seconds from ``received``)."""
    ends = []
    if budget_ms:
        ends.append(received + budget_ms / 1000.0)
    if time_remaining is not None:
        ends.append(received + max(0.0, time_remaining))
    return min(ends) if ends else None


def first_stage_ranks(first_stage: Sequence[float | None]) -> list[int]:
    """0-based rank of each document by first-stage score (best first; ties and documents
    without a score keep input order, which is the engine's order when nothing is given)."""
    if any(f is None for f in first_stage):
        return list(range(len(first_stage)))
    order = sorted(range(len(first_stage)), key=lambda i: (-(first_stage[i] or 0.0), i))
    ranks = [0] * len(first_stage)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def priorities(ranks: Sequence[int], deadline: float | None, received: float) -> list[int]:
    """Engine priorities of a call's generations: deadline (ms), then first-stage rank."""
    due = deadline if deadline is not None else received + NO_DEADLINE_HORIZON_S
    base = _GENERATION_BASE + int((due - _EPOCH) * 1000)
    return [base * _RANKS + min(r, _RANKS - 1) for r in ranks]


def closing_priorities(ranks: Sequence[int], deadline: float) -> list[int]:
    """Closings go before every generation, nearer deadlines first."""
    base = _CLOSING_BASE + max(0, int((deadline - _EPOCH) * 1000))
    return [base * _RANKS + min(r, _RANKS - 1) for r in ranks]


def waves(items: Sequence[int], first: int = FIRST_WAVE) -> list[list[int]]:
    """``items`` (best first) in waves of ``first``, then twice as many each time: the
    closings of one wave are answered together, so a deadline that comes mid-closing leaves
    only the later waves (the lower-ranked documents) unscored, not the whole window."""
    out, start, size = [], 0, first
    while start < len(items):
        out.append(list(items[start : start + size]))
        start, size = start + size, size * 2
    return out


def closed(partial: Generation, close_ids: Sequence[int], answer: Generation) -> Generation:
    """One generation out of a stopped one, the forced closing tokens and the answer read after
    them, to parse as usual (forced tokens carry logprob 0: only the answer's digits count)."""
    return Generation(
        token_ids=[*partial.token_ids, *close_ids, *answer.token_ids],
        logprobs=[*partial.logprobs, *[0.0] * len(close_ids), *answer.logprobs],
        hit_token_limit=False,
        prompt_tokens=partial.prompt_tokens,
        cached_prompt_tokens=partial.cached_prompt_tokens,
        stopped=answer.stopped,
    )


class ClosingCost:
    """What closing costs under the current load, learned from every closing the server does.

    Closing n documents costs about a + b·n (one batched step per answer token, plus a prefill
    per document of what the prefix cache lacks: on a GPU b is small, on a CPU it dominates).
    a and b are a least-squares fit over the last ``window`` closings; ``margin(n)`` is that
    prediction × ``headroom`` plus ``reserve()``, the time the server needs after the answers to
    fuse, order and send (also learned, at least ``floor_s``). A closing that overran (documents
    left unscored) is recorded at twice its time, so the next calls start closing earlier.
    Before any closing the margin is ``initial_s``; the server seeds it at warm-up.
    """

    def __init__(
        self,
        window: int = 32,
        headroom: float = 1.25,
        initial_s: float = 0.1,
        floor_s: float = 0.005,
    ) -> None:
        self.headroom = headroom
        self.initial_s = initial_s
        self.floor_s = floor_s
        self._closings: deque[tuple[int, float]] = deque(maxlen=window)
        self._responds: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float, documents: int, overran: bool = False) -> None:
        """One closing of ``documents`` documents took ``seconds``."""
        self._closings.append((max(1, documents), seconds * 2 if overran else seconds))
        metrics.CLOSING.observe(seconds)

    def responded(self, seconds: float) -> None:
        self._responds.append(seconds)

    def reserve(self) -> float:
        """Time kept after the last answer for fusion, ordering and sending."""
        return max(self.floor_s, 2 * _quantile(self._responds, 0.9))

    def margin(self, documents: int) -> float:
        """How long before the deadline to stop reasoning when ``documents`` may need closing."""
        if not self._closings:
            return self.initial_s + self.reserve()
        a, b = self._fit()
        margin = self.headroom * (a + b * max(1, documents)) + self.reserve()
        metrics.CLOSING_MARGIN.set(margin)
        return margin

    def _fit(self) -> tuple[float, float]:
        """(a, b) of seconds ≈ a + b·n, neither negative; one n seen: all of it in b·n."""
        ns = [n for n, _ in self._closings]
        ts = [t for _, t in self._closings]
        mean_n, mean_t = sum(ns) / len(ns), sum(ts) / len(ts)
        var = sum((n - mean_n) ** 2 for n in ns)
        if var == 0:
            return 0.0, max(ts) / mean_n
        b = max(0.0, sum((n - mean_n) * (t - mean_t) for n, t in self._closings) / var)
        a = max(0.0, mean_t - b * mean_n)
        worst = max(t - (a + b * n) for n, t in self._closings)  # the fit never undershoots
        return a + max(0.0, worst), b


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
