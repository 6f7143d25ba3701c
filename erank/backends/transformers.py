"""The transformers backend: the vLLM backend's generations on plain PyTorch + transformers.

For machines without vLLM. Prompts are batched (longest first, left-padded, ``max_num_seqs`` per
batch, 8 if unset) and decoded greedily with the KV cache by a loop of our own, so that every
step yields what the vLLM backend reports: the sampled token's raw logprob (log-softmax of the
unprocessed logits, vLLM's default ``raw_logprobs``), the stop at the end-of-sequence token,
the thinking budget forced by vLLM's rule, watched tokens' logprobs and the top-2 margin.
Generation runs on one worker thread, off the event loop. A document is reported as soon as its
own generation ends, also mid-batch. A cancelled call stops its running batch at the next step
and never starts its later batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from erank.backends.base import (
    THINK_END,
    THINK_START,
    EngineCounters,
    Generation,
    OnDone,
    Sampling,
    as_sampling,
    load_tokenizer,
)
from erank.settings import ServerSettings

_DTYPES = {"half": "float16", "float16": "float16", "bfloat16": "bfloat16", "float": "float32"}
DEFAULT_BATCH_SIZE = 8


class TransformersBackend:
    """Greedy batched generation with ``AutoModelForCausalLM`` on one worker thread."""

    name = "transformers"
    supports_thinking_budget = True

    def __init__(self, settings: ServerSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(settings.model, settings.revision)
        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = _DTYPES.get(settings.dtype, settings.dtype)
        model: Any = AutoModelForCausalLM.from_pretrained(
            settings.model,
            revision=settings.revision,
            dtype=dtype if dtype == "auto" else getattr(torch, dtype),
        )
        self.model = model.to(device).eval()
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.max_model_len = settings.max_model_len or limit
        self.batch_size = settings.max_num_seqs or DEFAULT_BATCH_SIZE
        self.counters = EngineCounters(self.name)
        self._rules = _Rules.of(self.tokenizer, self.model)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="erank-transformers")
        self._lock = threading.Lock()
        self._running = 0

    async def generate(
        self,
        prompts: Sequence[list[int]],
        sampling: Sampling | int,
        on_done: OnDone | None = None,
        priorities: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Generate batch after batch on the worker thread; stop early if cancelled.

        Prompts go in batches by priority (lower first), longest first within one; at
        ``Sampling.stop_at`` every unfinished generation comes back stopped.
        """
        s = as_sampling(sampling)
        loop = asyncio.get_running_loop()
        results: list[Generation | None] = [None] * len(prompts)
        cancel = threading.Event()

        def report(i: int, generation: Generation) -> None:  # on the event loop
            self.counters.done(generation)
            if on_done is not None and not cancel.is_set() and not generation.stopped:
                on_done(i, generation)

        def finished(i: int, generation: Generation) -> None:  # on the worker thread
            results[i] = generation
            self._add_running(-1)
            loop.call_soon_threadsafe(report, i, generation)

        rank = list(priorities) if priorities is not None else [0] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: (rank[i], -len(prompts[i])))
        batches = [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        self.counters.submitted(len(prompts))
        self._add_running(len(prompts))
        held = len(prompts)  # running count not yet handed to a batch on the thread
        try:
            for batch in batches:
                job = self._executor.submit(
                    self._run_batch,
                    [prompts[i] for i in batch],
                    s,
                    cancel,
                    functools.partial(_in_call, batch, finished),
                )
                held -= len(batch)
                try:
                    await asyncio.wrap_future(job)
                except BaseException:
                    if job.cancel():  # never started: its prompts are not running
                        self._add_running(-len(batch))
                    raise
        except BaseException:
            cancel.set()
            self._add_running(-held)
            raise
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _run_batch(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        cancel: threading.Event,
        finished: Callable[[int, Generation], None],
    ) -> None:
        import torch

        done: set[int] = set()

        def finish(j: int, generation: Generation) -> None:
            done.add(j)
            finished(j, generation)

        try:
            with torch.inference_mode():
                _greedy(self.model, self._rules, prompts, sampling, cancel, finish)
        finally:
            self._add_running(-(len(prompts) - len(done)))  # cancelled or failed

    def _add_running(self, n: int) -> None:
        with self._lock:
            self._running += n

    def running_requests(self) -> int:
        with self._lock:
            return self._running

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _in_call(
    batch: list[int], finished: Callable[[int, Generation], None], j: int, g: Generation
) -> None:
    """Batch position ``j`` → the prompt's index in the call."""
    finished(batch[j], g)


@dataclass(frozen=True)
class _Rules:
    """Tokenizer facts the decoding loop needs."""

    pad_id: int
    eos_ids: frozenset[int]
    think_start: tuple[int, ...]
    think_end: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any, model: Any) -> _Rules:
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if configured is not None:  # as vLLM: the generation config's ids stop too
            eos |= {configured} if isinstance(configured, int) else set(configured)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)

        def encode(text: str) -> tuple[int, ...]:
            return tuple(tokenizer.encode(text, add_special_tokens=False))

        return cls(int(pad), frozenset(eos), encode(THINK_START), encode(THINK_END))


@dataclass
class _Think:
    """vLLM's thinking-budget rule for one sequence (``thinking_budget_state.py``).

    Inside a think block (after THINK_START) every token counts; once ``budget`` tokens have
    been counted without the model writing THINK_END itself, THINK_END is forced token by token.
    """

    budget: int
    start: tuple[int, ...]
    end: tuple[int, ...]
    in_think: bool = False
    count: int = 0
    forcing: list[int] = field(default_factory=list)

    @classmethod
    def for_prompt(cls, prompt: list[int], budget: int, rules: _Rules) -> _Think:
        state = cls(budget, rules.think_start, rules.think_end)
        start, end = _last(prompt, state.start), _last(prompt, state.end)
        if start > end:  # the prompt itself opens a think block
            state.in_think = True
            state.count = len(prompt) - start - len(state.start)
            if state.count >= budget:
                state.forcing = list(state.end)
        return state

    def next_forced(self) -> int | None:
        return self.forcing.pop(0) if self.forcing else None

    def update(self, output: list[int], forced: bool) -> None:
        if forced:
            self.in_think = self.in_think and bool(self.forcing)
            return
        if not self.in_think:
            if _ends_with(output, self.start):
                self.in_think, self.count = True, 0
                if self.budget == 0:
                    self.forcing = list(self.end)
            return
        self.count += 1
        if _ends_with(output, self.end):
            self.in_think = False
        elif self.count >= self.budget:
            self.forcing = list(self.end)


def _last(ids: list[int], seq: tuple[int, ...]) -> int:
    n = len(seq)
    for i in range(len(ids) - n, -1, -1):
        if tuple(ids[i : i + n]) == seq:
            return i
    return -1


def _ends_with(ids: list[int], seq: tuple[int, ...]) -> bool:
    return len(ids) >= len(seq) > 0 and tuple(ids[-len(seq) :]) == seq


@dataclass
class _Seq:
    """One prompt's generation in progress."""

    prompt_len: int
    think: _Think | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    watched: list[dict[int, float]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    done: bool = False

    def generation(self, s: Sampling, hit_limit: bool) -> Generation:
        return Generation(
            token_ids=self.tokens,
            logprobs=self.logprobs,
            hit_token_limit=hit_limit,
            prompt_tokens=self.prompt_len,
            cached_prompt_tokens=0,
            watched=self.watched if s.watch_token_ids else None,
            margins=self.margins if s.margins else None,
        )


def _greedy(
    model: Any,
    rules: _Rules,
    prompts: list[list[int]],
    s: Sampling,
    cancel: threading.Event,
    finish: Callable[[int, Generation], None],
) -> None:
    """Decode one left-padded batch greedily; ``finish(j, generation)`` as each one ends."""
    import torch

    device = model.device
    budget = s.thinking_budget
    seqs = [
        _Seq(len(p), None if budget is None else _Think.for_prompt(p, budget, rules))
        for p in prompts
    ]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[rules.pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = None
    watch = torch.tensor(s.watch_token_ids, device=device) if s.watch_token_ids else None
    for _ in range(s.max_new_tokens):
        if cancel.is_set():
            return
        if s.stop_at is not None and time.monotonic() >= s.stop_at:
            for j, seq in enumerate(seqs):
                if not seq.done:
                    seq.done = True
                    finish(j, dataclasses.replace(seq.generation(s, False), stopped=True))
            return
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        logprobs = out.logits[:, -1, :].float().log_softmax(-1)
        tokens = _step(seqs, logprobs, watch, s, rules)
        for j, seq in enumerate(seqs):
            if not seq.done and _stops(seq, rules):
                seq.done = True
                finish(j, seq.generation(s, hit_limit=False))
        if all(seq.done for seq in seqs):
            return
        ids = torch.tensor(tokens, device=device)[:, None]
        mask = torch.cat([mask, mask.new_ones(len(seqs), 1)], dim=-1)
        positions = positions[:, -1:] + 1
    for j, seq in enumerate(seqs):
        if not seq.done:
            seq.done = True
            finish(j, seq.generation(s, hit_limit=True))


def _step(seqs: list[_Seq], logprobs: Any, watch: Any, s: Sampling, rules: _Rules) -> list[int]:
    """Choose and record every sequence's next token (finished ones get padding)."""
    import torch

    greedy = logprobs.argmax(-1).tolist()
    tokens, forced = [], []
    for seq, best in zip(seqs, greedy, strict=True):
        pick = None if seq.done or seq.think is None else seq.think.next_forced()
        forced.append(pick is not None)
        tokens.append(rules.pad_id if seq.done else best if pick is None else pick)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=logprobs.device)[:, None])
    chosen_lp = chosen[:, 0].tolist()
    margins = watched = None
    if s.margins:
        top = logprobs.topk(2, dim=-1).values
        margins = (top[:, 0] - top[:, 1]).tolist()
    if watch is not None:
        watched = logprobs[:, watch].tolist()
    for j, seq in enumerate(seqs):
        if seq.done:
            continue
        seq.tokens.append(tokens[j])
        seq.logprobs.append(chosen_lp[j])
        if margins is not None:
            seq.margins.append(margins[j])
        if watched is not None:
            seq.watched.append(dict(zip(s.watch_token_ids, watched[j], strict=True)))
        if seq.think is not None:
            seq.think.update(seq.tokens, forced[j])
    return tokens


def _stops(seq: _Seq, rules: _Rules) -> bool:
    """vLLM's stop rule without a stop string: an end-of-sequence token."""
    return seq.tokens[-1] in rules.eos_ids
