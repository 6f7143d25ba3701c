"""Finishing cut documents after the answer was sent, so the next identical search is full.

A call cut at its deadline (erank/anytime.py) answered with approximations; with
``finish_in_background`` each cut document goes on from where it stopped (its prompt + the
reasoning so far: the prefix cache holds it) to the end of its reasoning, at the lowest engine
priority, and its full score goes into the score cache. The same search a moment later is then
answered in full from the cache.

Bounded: at most ``max_documents`` wait or run, ``concurrency`` of them in the engine at once,
each in chunks of ``CHUNK_TOKENS`` (vLLM's priority scheduler orders the waiting requests but
does not take an engine sequence back from a running one when all are taken: a background
request gives its sequence back every chunk, and its prefix is cached, so a chunk costs one
partial block of prefill). Under pressure they go first: a call
refused for admission (``shed``) drops every waiting one and aborts the running ones. Counted
in ``erank_background_documents`` and ``erank_background_documents_finished{outcome}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from erank import metrics
from erank.anytime import BACKGROUND_PRIORITY
from erank.backends.base import Backend, Generation, Sampling

log = logging.getLogger("erank.background")
# Tokens per engine request: between two, a background document gives its engine sequence back,
# so calls waiting for one never wait longer than this many steps (greedy continues the same).
CHUNK_TOKENS = 64


class Background:
    """Finishes stopped generations off the call's path; ``store`` gets the whole generation."""

    def __init__(self, backend: Backend, max_documents: int, concurrency: int) -> None:
        self.backend = backend
        self.max_documents = max_documents
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def submit(
        self,
        prompt: list[int],
        partial: Generation,
        max_new_tokens: int,
        store: Callable[[Generation], None],
    ) -> bool:
        """Queue one document; False (and counted as dropped) when the queue is full."""
        left = max_new_tokens - len(partial.token_ids)
        if len(self._tasks) >= self.max_documents or left < 1:
            metrics.BACKGROUND.labels("dropped").inc()
            return False
        task = asyncio.ensure_future(self._finish(prompt, partial, left, store))
        self._tasks.add(task)
        metrics.BACKGROUND_QUEUED.set(len(self._tasks))
        task.add_done_callback(self._forget)
        return True

    async def _finish(
        self,
        prompt: list[int],
        partial: Generation,
        left: int,
        store: Callable[[Generation], None],
    ) -> None:
        ids, logprobs = list(partial.token_ids), list(partial.logprobs)
        end = len(ids) + left
        while True:
            async with self._slots:
                (step,) = await self.backend.generate(
                    [[*prompt, *ids]],
                    Sampling(min(CHUNK_TOKENS, end - len(ids))),
                    priorities=[BACKGROUND_PRIORITY],
                )
            ids += step.token_ids
            logprobs += step.logprobs
            if not step.hit_token_limit or len(ids) >= end:
                break
        generation = Generation(
            token_ids=ids,
            logprobs=logprobs,
            hit_token_limit=step.hit_token_limit,
            prompt_tokens=partial.prompt_tokens,
            cached_prompt_tokens=partial.cached_prompt_tokens,
        )
        store(generation)
        metrics.BACKGROUND.labels("finished").inc()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        metrics.BACKGROUND_QUEUED.set(len(self._tasks))
        if task.cancelled():
            metrics.BACKGROUND.labels("dropped").inc()
        elif task.exception() is not None:
            metrics.BACKGROUND.labels("failed").inc()
            log.warning("background completion failed: %r", task.exception())

    def shed(self) -> None:
        """Drop everything waiting or running (the server is refusing calls)."""
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        self.shed()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
