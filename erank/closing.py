"""Closing reasoning a deadline stopped: every document answered by the call's deadline.

When a call's deadline nears, the scorer stops the reasoning still running (``Sampling.stop_at``
at the learned margin, erank/anytime.py) and the engine is asked, for each stopped document, for
the answer given the thinking so far: prompt + reasoning + ``</think><answer>``, at most
``CLOSE_MAX_TOKENS`` tokens, before every other engine request. Closings go in waves from the
best first-stage ranks down, so a deadline that comes mid-closing costs the lowest-ranked
answers, not the window's. What has no answer by then is unscored (kept, never dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

from erank import anytime
from erank.anytime import CLOSE_MAX_TOKENS, ClosingCost
from erank.backends.base import Backend, Generation, Sampling
from erank.job import Job
from erank.ranking import CompletionName
from erank.reader import AnswerReader
from erank.score import ParsedAnswer

# A document's answer reached: (index in the call's engine work, answer, completion, thinking).
Done: TypeAlias = Callable[[int, ParsedAnswer, CompletionName, int], None]
UNSCORED = ParsedAnswer(None, 0.0, "", "the deadline came before an answer")


class Closer:
    """Closes one server's stopped generations and learns what closing costs (``cost``)."""

    def __init__(self, backend: Backend, reader: AnswerReader, cost: ClosingCost) -> None:
        self.backend = backend
        self.reader = reader
        self.cost = cost

    async def close(
        self,
        job: Job,
        todo: list[int],
        prompts: list[list[int]],
        generations: list[Generation],
        stopped: list[int],
        ranks: list[int],
        done: Done,
    ) -> None:
        """Answers for generations stopped at the margin: each prompt + its reasoning so far +
        ``</think><answer>``, a few tokens each, before every other engine request, in waves
        from the best first-stage ranks down (:func:`anytime.waves`). What has no answer when
        the deadline comes is unscored."""
        assert job.deadline is not None
        params = job.params
        closing: list[int] = []
        for k in stopped:
            job.spent(generations[k])
            own = self.reader.parse(generations[k], params.return_reasoning)
            if own.answer is not None:  # it had answered; only the end of the turn was missing
                done(k, own, "full", self.reader.thinking(generations[k]))
            else:
                closing.append(k)
                job.partials[todo[k]] = generations[k]
        if not closing:
            return
        close = self.reader.close_ids
        last = job.deadline - self.cost.reserve()
        began = time.monotonic()
        answers: dict[int, Generation] = {}
        for wave in anytime.waves(sorted(closing, key=lambda k: ranks[k])):
            if time.monotonic() >= last:
                break
            got = await self.backend.generate(
                [[*prompts[k], *generations[k].token_ids, *close] for k in wave],
                Sampling(CLOSE_MAX_TOKENS, stop_at=last),
                priorities=anytime.closing_priorities([ranks[k] for k in wave], job.deadline),
            )
            answers.update(zip(wave, got, strict=True))
        overran = len(answers) < len(closing) or any(a.stopped for a in answers.values())
        self.cost.observe(time.monotonic() - began, len(closing), overran)
        self._read(job, closing, generations, answers, done)

    def _read(
        self,
        job: Job,
        closing: list[int],
        generations: list[Generation],
        answers: dict[int, Generation],
        done: Done,
    ) -> None:
        """Each closed document's answer: ``cut``, or ``unscored`` without one in time."""
        close = self.reader.close_ids
        for k in closing:
            thinking = len(generations[k].token_ids)
            answer = answers.get(k)
            if answer is None:
                done(k, UNSCORED, "unscored", thinking)
                continue
            job.spent(answer)
            whole = anytime.closed(generations[k], close, self.reader.answered(answer))
            parsed = self.reader.parse(whole, job.params.return_reasoning)
            if answer.stopped and parsed.answer is None:
                done(k, UNSCORED, "unscored", thinking)
            else:
                done(k, parsed, "cut", thinking)
