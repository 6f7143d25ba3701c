"""The scoring pipeline of one request: prompts → score cache → engine → answers → response.

Backend-agnostic: any ``Backend`` (erank/backends) that returns greedy generations with the
sampled tokens' logprobs gets the same prompt, parse and score. A request goes through
``prepare`` (validation, prompts, cache lookups: a hit never reaches the engine), ``score``
(engine work for the misses, each document reported as soon as its answer is read) and
``respond`` (fusion and ordering). ``rerank`` runs them in a row, ``stream`` yields one event per
document and then the response. In best-passage mode a document is several prompts, one per
passage (:mod:`erank.passages`), and counts as scored once all of them are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from erank import anytime, metrics, passages
from erank.anytime import ClosingCost
from erank.backends.base import Backend, Generation, Sampling
from erank.background import Background
from erank.cache import CachedScore, ScoreCache, key_prefix, score_key
from erank.closing import UNSCORED, Closer, Done
from erank.job import Job
from erank.prompt import SCORE_ONLY_SUFFIX, PromptBuilder
from erank.ranking import CompletionName, Scored, rank, result
from erank.reader import AnswerReader
from erank.score import ParsedAnswer, best_digit, score_only_answer
from erank.settings import ServerSettings
from erank.shared_cache import SharedScoreCache
from erank.validation import (
    MODE_ENUMS,
    InvalidRequest,
    RerankParams,
    Violation,
    validate,
)
from erank_contract.instructions import PRESETS, SOURCES
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import FUSION_ENUMS


class Scorer:
    """Scores requests with one backend under one set of server settings."""

    def __init__(self, backend: Backend, settings: ServerSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.prompts = PromptBuilder(backend.tokenizer, settings.template_version)
        # Prompts are tokenized here, off the event loop (the tokenizer lets go of the GIL): on
        # the loop, a burst's admitted calls held up the gRPC accepts its refusals wait for.
        self._tokenizing = ThreadPoolExecutor(1, thread_name_prefix="erank-tokenize")
        self.cache = ScoreCache(
            settings.score_cache_entries, settings.score_cache_bytes, settings.score_cache_ttl_s
        )
        self.reader = AnswerReader(backend.tokenizer)
        self.parse = self.reader.parse
        self.digit_ids = self.reader.digit_ids
        url = settings.score_cache_url
        self.shared = (
            None
            if url is None
            else SharedScoreCache(
                url.get_secret_value(),
                settings.score_cache_ttl_s,
                settings.score_cache_shared_timeout_ms / 1000,
            )
        )
        self.closing = ClosingCost()
        self.closer = Closer(backend, self.reader, self.closing)
        self.background = Background(
            backend, settings.background_max_documents, settings.background_concurrency
        )

    async def close(self) -> None:
        """Stop background work and let the shared cache's last writes go out."""
        await self.background.close()
        if self.shared is not None:
            await self.shared.close()
        self._tokenizing.shutdown(wait=False)

    def model_info(self) -> pb.ModelInfo:
        s = self.settings
        return pb.ModelInfo(
            model=s.model,
            revision=s.revision or "",
            backend=self.backend.name,
            max_model_len=self.backend.max_model_len,
            max_new_tokens=s.max_new_tokens,
            default_truncate_length=s.default_truncate_length,
            max_truncate_length=s.max_truncate_length,
            max_documents=s.max_documents,
            max_text_chars=s.max_text_chars,
            template_version=self.prompts.template_version,
            default_instruction=s.default_instruction,
            default_alpha=s.default_alpha,
            default_mode=MODE_ENUMS[s.default_mode],
            default_thinking_budget=s.default_thinking_budget,
            instruction_presets=[
                pb.InstructionPreset(name=name, instruction=text, source=SOURCES[name])
                for name, text in PRESETS.items()
            ],
        )

    async def rerank(
        self, request: pb.RerankRequest, deadline: float | None = None
    ) -> pb.RerankResponse:
        """Validate, score and order; raises ``InvalidRequest`` for a bad request.

        ``deadline`` (``time.monotonic()``): with DEADLINE_POLICY_CUT every document has an
        answer by then (erank/anytime.py).
        """
        job = await self.prepare(request, deadline)
        await self.score(job)
        began = time.monotonic()
        response = self.respond(job)
        self.closing.responded(time.monotonic() - began)
        self._finish_later(job)
        return response

    async def stream(
        self, request: pb.RerankRequest, deadline: float | None = None
    ) -> AsyncGenerator[pb.RerankEvent, None]:
        """One event per document as soon as it is scored (cache hits first), then the response.

        Closing the iterator (the RPC was cancelled) cancels the engine work still running.
        """
        job = await self.prepare(request, deadline)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(job.groups)):
            if job.document(i) is not None:
                queue.put_nowait(i)
        task = asyncio.ensure_future(self.score(job, queue.put_nowait))
        try:
            for _ in job.groups:
                i = await _next(queue, task)
                yield pb.RerankEvent(result=self.result(job, i))
            await task
            yield pb.RerankEvent(response=self.respond(job))
            self._finish_later(job)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def prepare(self, request: pb.RerankRequest, deadline: float | None = None) -> Job:
        """Validate, build the prompts and look every document up in the score cache."""
        received = time.monotonic()
        params = validate(request, self.settings)
        if params.mode == "thinking_budget" and not getattr(
            self.backend, "supports_thinking_budget", False
        ):
            raise InvalidRequest([Violation("mode", "this engine has no thinking-budget support")])
        suffix = SCORE_ONLY_SUFFIX if params.mode == "score_only" else ""
        spans = self._passages(params)
        ends = list(itertools.accumulate(len(p) for p in spans))
        groups = [range(end - len(p), end) for p, end in zip(spans, ends, strict=True)]
        owners = [i for i, g in enumerate(groups) for _ in g]
        places = [span for p in spans for span in p]
        texts = [params.texts[i][a:b] for i, (a, b) in zip(owners, places, strict=True)]
        build = functools.partial(
            self.prompts.build,
            params.instruction,
            params.query,
            texts,
            params.truncate_length,
            suffix,
        )
        prompts = await asyncio.get_running_loop().run_in_executor(self._tokenizing, build)
        self._check_lengths([len(p.token_ids) for p in prompts], owners)
        s = self.settings
        prefix = key_prefix(
            s.model,
            s.revision,
            self.prompts.template_version,
            params.mode,
            params.thinking_budget,
            s.max_new_tokens,
        )
        keys = [score_key(prefix, p.token_ids) for p in prompts]
        job = Job(params, prompts, keys, groups, owners, places, [None] * len(prompts))
        job.received = received
        job.due = deadline
        job.deadline = deadline if params.cut_at_deadline else None
        job.ranks = anytime.first_stage_ranks(params.first_stage)
        for i, key in enumerate(keys):
            hit = self.cache.get(key, with_reasoning=params.return_reasoning)
            if hit is not None:
                job.scored[i] = Scored(hit.parsed, prompts[i].truncation, params.mode, cached=True)
                metrics.DOCUMENTS.labels(params.mode).inc()
        job.usage.cache_hits = sum(s is not None for s in job.scored)
        job.usage.cache_misses = len(keys) - job.usage.cache_hits
        return job

    def _passages(self, params: RerankParams) -> list[list[tuple[int, int]]]:
        """Each document's passage spans: the whole text unless in best-passage mode."""
        if not params.best_passage:
            return [[(0, len(t))] for t in params.texts]
        s = self.settings
        return passages.split(
            self.backend.tokenizer,
            params.texts,
            params.truncate_length,
            params.passage_overlap,
            s.max_passages_per_document,
            s.max_passages_per_request,
        )

    async def score(self, job: Job, on_scored: Callable[[int], None] | None = None) -> None:
        """Engine work for every passage not yet scored; ``on_scored(i)`` as each document
        (all its passages) is. With a deadline, reasoning still running shortly before it is
        closed (:meth:`_close`)."""
        todo = [i for i, s in enumerate(job.scored) if s is None]
        if todo and self.shared is not None:
            await self._shared_hits(job, todo, on_scored)
            todo = [i for i in todo if job.scored[i] is None]
        if not todo:
            return
        fresh: list[tuple[bytes, CachedScore]] = []
        try:
            await self._engine(job, todo, fresh, on_scored)
        finally:
            if self.shared is not None and fresh:
                self.shared.put_many(fresh)

    async def _shared_hits(
        self, job: Job, todo: list[int], on_scored: Callable[[int], None] | None
    ) -> None:
        """Scores another replica (or this one, before a restart) stored in the shared cache.
        A slow or absent cache costs at most a quarter of the time left to the deadline."""
        assert self.shared is not None
        left = None if job.due is None else max(0.0, (job.due - time.monotonic()) / 4)
        keys = [job.keys[j] for j in todo]
        hits = await self.shared.get_many(keys, job.params.return_reasoning, left)
        for j, hit in zip(todo, hits, strict=True):
            if hit is None:
                continue
            job.scored[j] = Scored(
                hit.parsed, job.prompts[j].truncation, job.params.mode, cached=True
            )
            self.cache.put(job.keys[j], hit)
            job.usage.cache_hits += 1
            job.usage.cache_misses -= 1
            metrics.DOCUMENTS.labels(job.params.mode).inc()
            if on_scored is not None and job.document(job.owners[j]) is not None:
                on_scored(job.owners[j])

    async def _engine(
        self,
        job: Job,
        todo: list[int],
        fresh: list[tuple[bytes, CachedScore]],
        on_scored: Callable[[int], None] | None,
    ) -> None:
        """Engine work for the passages ``todo``; full scores go to the caches (``fresh``:
        the shared one's batch)."""
        params = job.params

        def done(k: int, parsed: ParsedAnswer, completion: CompletionName, thinking: int) -> None:
            j = todo[k]
            job.scored[j] = Scored(
                parsed,
                job.prompts[j].truncation,
                params.mode,
                completion=completion,
                thinking_tokens=thinking,
            )
            if completion == "full":  # a cut answer is never a cached score
                complete = params.return_reasoning or params.mode == "score_only"
                kept = CachedScore(parsed, with_reasoning=complete)
                self.cache.put(job.keys[j], kept)
                fresh.append((job.keys[j], kept))
            metrics.DOCUMENTS.labels(params.mode).inc()
            metrics.COMPLETIONS.labels(completion).inc()
            i = job.owners[j]
            if on_scored is not None and job.document(i) is not None:
                on_scored(i)

        prompts = [job.prompts[i].token_ids for i in todo]
        ranks = [job.ranks[job.owners[j]] for j in todo]
        order = anytime.priorities(ranks, job.due, job.received)
        if params.mode == "score_only":  # no reasoning to close: one step, due by the deadline
            last = None if job.deadline is None else job.deadline - self.closing.reserve()
            await self._score_only(job, prompts, done, order, last)
            return
        stop_at = None
        if job.deadline is not None:
            job.closing_margin = self.closing.margin(len(todo))
            stop_at = job.deadline - job.closing_margin
        sampling = Sampling(
            self.settings.max_new_tokens, thinking_budget=params.thinking_budget, stop_at=stop_at
        )

        def generated(k: int, g: Generation) -> None:
            job.spent(g)
            done(k, self.parse(g, params.return_reasoning), "full", self.reader.thinking(g))

        generations = await self.backend.generate(prompts, sampling, generated, order)
        stopped = [k for k, g in enumerate(generations) if g.stopped]
        if stopped:
            await self.closer.close(job, todo, prompts, generations, stopped, ranks, done)

    def _finish_later(self, job: Job) -> None:
        """Cut full-mode documents go on to their full reasoning in the background, their
        full scores into the score cache (erank/background.py)."""
        params = job.params
        if not (params.finish_in_background and job.partials and params.mode == "full"):
            return
        budget = self.settings.max_new_tokens
        for j, partial in job.partials.items():
            key, prompt = job.keys[j], job.prompts[j].token_ids

            def store(g: Generation, key: bytes = key) -> None:
                kept = CachedScore(self.parse(g, with_reasoning=True), with_reasoning=True)
                self.cache.put(key, kept)
                if self.shared is not None:
                    self.shared.put_many([(key, kept)])

            self.background.submit(prompt, partial, budget, store)

    async def _score_only(
        self,
        job: Job,
        prompts: list[list[int]],
        done: Done,
        order: list[int],
        stop_at: float | None,
    ) -> None:
        """One step per prompt reads the digits; "1" takes a second step to tell 10 from 1.

        With a deadline there is nothing to cut (no reasoning): a prompt whose step has not
        run by the margin is unscored; a second step that has not run keeps the first's 1."""
        digits = self.digit_ids()
        first: dict[int, list[float]] = {}

        def read(k: int, g: Generation) -> None:
            job.spent(g)
            assert g.watched is not None
            lps = [g.watched[0].get(t, float("-inf")) for t in digits]
            if best_digit(lps) == 1:
                first[k] = lps
            else:
                done(k, score_only_answer(lps), "full", 0)

        step = Sampling(max_new_tokens=1, watch_token_ids=tuple(digits), stop_at=stop_at)
        for k, g in enumerate(await self.backend.generate(prompts, step, read, order)):
            if g.stopped:
                done(k, UNSCORED, "unscored", 0)
        ones = sorted(first)

        def read_second(j: int, g: Generation) -> None:
            job.spent(g)
            ten = g.logprobs[0] if g.token_ids[:1] == [digits[0]] else None
            done(ones[j], score_only_answer(first[ones[j]], ten), "full", 0)

        if ones:
            followed = [[*prompts[k], digits[1]] for k in ones]
            second = Sampling(1, stop_at=stop_at)
            seconds = await self.backend.generate(
                followed, second, read_second, [order[k] for k in ones]
            )
            for j, g in enumerate(seconds):
                if g.stopped:
                    done(ones[j], score_only_answer(first[ones[j]]), "cut", 0)

    def result(self, job: Job, i: int) -> pb.RerankResult:
        """Document ``i``'s streamed result (no hybrid score: that needs every document)."""
        scored = job.document(i)
        assert scored is not None
        return result(job.params, scored, i)

    def respond(self, job: Job) -> pb.RerankResponse:
        scored = [s for s in map(job.document, range(len(job.groups))) if s is not None]
        assert len(scored) == len(job.groups), "respond() before every document was scored"
        results, notice = rank(job.params, scored)
        fused = all(f is not None for f in job.params.first_stage)
        return pb.RerankResponse(
            results=results,
            model=self.settings.model,
            usage=job.usage,
            ordered_by=pb.ORDERING_HYBRID_SCORE if fused else pb.ORDERING_RANK_SCORE,
            notice=notice,
            fusion=FUSION_ENUMS[job.params.fusion] if fused else pb.FUSION_UNSPECIFIED,
            completions=job.completions(scored),
        )

    def _check_lengths(self, lengths: list[int], owners: list[int]) -> None:
        """Every prompt (``owners[j]``: its document) must leave room for the generation."""
        budget = self.backend.max_model_len - self.settings.max_new_tokens
        over = [
            Violation(
                f"documents[{owners[j]}]",
                f"prompt is {n} tokens; with max_new_tokens {self.settings.max_new_tokens} the "
                f"model's max_model_len {self.backend.max_model_len} allows {budget}: "
                "lower truncate_length",
            )
            for j, n in enumerate(lengths)
            if n > budget
        ]
        if over:
            raise InvalidRequest(over[:20])


async def _next(queue: asyncio.Queue[int], task: asyncio.Future[None]) -> int:
    """The next scored document's index, or the scoring task's error."""
    if not queue.empty():
        return queue.get_nowait()
    getter: asyncio.Future[int] = asyncio.ensure_future(queue.get())
    waiting: set[asyncio.Future[Any]] = {getter, task}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    if not queue.empty():
        return queue.get_nowait()
    task.result()  # raises the engine's error, if any
    raise RuntimeError("scoring ended before every document was scored")
