"""The vLLM backend: greedy generation on vLLM's asyncio engine (V1 ``AsyncLLM``).

Started once per process. Every prompt of a call is submitted at once, so continuous batching and
prefix caching work across documents and across concurrent calls. A call that is cancelled
(deadline passed, client gone, stream closed) aborts its engine requests, so no orphan
generation keeps the device busy.

Thinking budgets use vLLM's own support (``SamplingParams.thinking_token_budget``, vLLM ≥ 0.17
with a reasoning config given at engine start): after B tokens that follow ``<think>`` the
engine forces ``</think><answer>``. The engine recognises the model's own end of reasoning only
by that exact token sequence, so a model that writes ``</think>`` within three tokens of the
budget gets a second ``</think><answer>`` written after its own (the answer is still read: the
last ``<answer>…</answer>`` counts). Logprobs are the engine's raw (unprocessed) ones, so a
forced token's logprob is what the model would have given it.

vLLM runs the model in an engine-core process (which starts its own worker processes) and
leaves it running when this process is killed outright. ``_engine_core`` is the engine core's
entry point here: it leaves the server's process group (a Ctrl-C or a group-wide SIGTERM then
reaches only the server, which drains before it stops the engine) and watches its parent; once
the parent is gone it kills its own process tree. ``dead`` tells the server when the engine
core died, so it can stop saying SERVING (erank/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
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


class VllmBackend:
    """Greedy generation on vLLM's ``AsyncLLM``; create inside a running event loop."""

    name = "vllm"

    def __init__(self, settings: ServerSettings) -> None:
        # vLLM's CPU build refuses to start without an explicit KV-cache size (GiB).
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        block_size = settings.block_size
        if block_size is None and current_platform.is_cpu():
            block_size = 32  # CPU default is 128: a shorter shared prefix would never hit the cache
        optional: dict[str, Any] = {
            "max_model_len": settings.max_model_len,
            "max_num_seqs": settings.max_num_seqs,
            "reasoning_config": _reasoning_config(),
            "load_format": None if settings.load_format == "auto" else settings.load_format,
        }
        args = AsyncEngineArgs(
            model=settings.model,
            revision=settings.revision,
            dtype=settings.dtype,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            tensor_parallel_size=settings.tensor_parallel_size,
            enforce_eager=settings.enforce_eager,
            block_size=block_size,
            enable_prefix_caching=True,
            # Lower first when the engine is full (erank/anytime.py: nearer deadlines, better
            # first-stage ranks; closings before everything, background completion after).
            scheduling_policy="priority",
            disable_log_stats=True,
            **{k: v for k, v in optional.items() if v is not None},
        )
        with _engine_core_dies_with_this_process():
            self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = load_tokenizer(settings.model, settings.revision)
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self.supports_thinking_budget = optional["reasoning_config"] is not None
        self.counters = EngineCounters(self.name)

    def _params(self, sampling: Sampling | int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = as_sampling(sampling)
        if s.watch_token_ids and s.margins:
            raise ValueError("vLLM reports either watched tokens or the top-2, not both")
        # greedy: the sampled token is the top-1, so top-2 gives the margin
        extra: dict[str, Any] = {"logprobs": 2 if s.margins else 0}
        if s.watch_token_ids:  # these tokens' logprobs plus the sampled token's
            extra = {"logprob_token_ids": list(s.watch_token_ids)}
        if s.thinking_budget is not None:
            extra["thinking_token_budget"] = s.thinking_budget
        # detokenize=False: the scorer decodes only the answer's tokens itself; vLLM would
        # otherwise turn every generated token (and each logprob's token) into text on this
        # process's event loop, the largest cost the profile found there (bench/RESULTS.md).
        return SamplingParams(
            temperature=0.0,
            max_tokens=s.max_new_tokens,
            output_kind=RequestOutputKind.FINAL_ONLY,
            detokenize=False,
            **extra,
        )

    async def generate(
        self,
        prompts: Sequence[list[int]],
        sampling: Sampling | int,
        on_done: OnDone | None = None,
        priorities: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Generate for all prompts concurrently; abort every unfinished one if cancelled.

        With ``Sampling.stop_at`` the unfinished ones are aborted at that instant: vLLM's final
        output of an aborted request holds the tokens generated so far (and their logprobs),
        which come back as stopped generations; their blocks stay in the prefix cache, so a
        request continuing from them recomputes almost nothing.
        """
        from vllm.inputs import TokensPrompt

        s = as_sampling(sampling)
        params = self._params(s)
        call = uuid.uuid4().hex
        ids = [f"{call}-{i}" for i in range(len(prompts))]
        order = list(priorities) if priorities is not None else [0] * len(prompts)
        stopping = False

        async def one(i: int, rid: str, prompt: list[int], priority: int) -> Generation:
            if stopping:  # never sent: stopped before it began
                return Generation([], [], False, len(prompt), 0, stopped=True)
            final = None
            async for out in self.engine.generate(
                TokensPrompt(prompt_token_ids=prompt), params, rid, priority=priority
            ):
                final = out
            assert final is not None
            generation = _generation(final, len(prompt), s, stopping)
            self.counters.done(generation)
            if on_done is not None and not generation.stopped:
                on_done(i, generation)
            return generation

        async def stop_at(when: float) -> None:
            nonlocal stopping
            await asyncio.sleep(max(0.0, when - time.monotonic()))
            stopping = True
            # Again until all are back: a request still on its way into the engine when the
            # first abort went out is unknown to it and would run to its end.
            while unfinished := [rid for rid, t in zip(ids, tasks, strict=True) if not t.done()]:
                await self.engine.abort(unfinished)
                await asyncio.sleep(_ABORT_POLL_S)

        self.counters.submitted(len(prompts))
        # Submitted best priority first: the engine schedules whatever has arrived, so the
        # first requests in would take the free sequences whatever their priority.
        first = sorted(range(len(prompts)), key=order.__getitem__)
        started = {i: asyncio.ensure_future(one(i, ids[i], prompts[i], order[i])) for i in first}
        tasks = [started[i] for i in range(len(prompts))]
        timer = asyncio.ensure_future(stop_at(s.stop_at)) if s.stop_at is not None else None
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            if timer is not None:
                timer.cancel()
            unfinished = [rid for rid, t in zip(ids, tasks, strict=True) if not t.done()]
            for t in tasks:
                t.cancel()
            if unfinished:
                await asyncio.shield(self.engine.abort(unfinished))

    def running_requests(self) -> int:
        return int(self.engine.get_num_unfinished_requests())

    def dead(self) -> str | None:
        """Why the engine can no longer generate (its core process died), or None."""
        engine = getattr(self, "engine", None)
        if engine is None:
            return "the engine was shut down"
        return "vLLM's engine core stopped" if engine.errored else None

    def shutdown(self) -> None:
        self.engine.shutdown()
        del self.engine  # a live reference makes interpreter exit print a harmless TypeError


def _reasoning_config() -> Any:
    """vLLM's reasoning config for thinking budgets, or None where this vLLM has none."""
    try:
        from vllm.config.reasoning import ReasoningConfig
    except ImportError:  # older vLLM: no thinking_token_budget
        return None
    return ReasoningConfig(reasoning_start_str=THINK_START, reasoning_end_str=THINK_END)


def _generation(out: Any, prompt_len: int, sampling: Sampling, stopping: bool) -> Generation:
    completion = out.outputs[0]
    stopped = completion.finish_reason == "abort"
    if stopped and not stopping:
        raise asyncio.CancelledError(f"engine request {out.request_id} was aborted")
    token_ids = list(completion.token_ids)
    steps = completion.logprobs or []
    logprobs = [float(step[t].logprob) for step, t in zip(steps, token_ids, strict=True)]
    watched = margins = None
    if sampling.watch_token_ids:
        watched = [
            {t: float(step[t].logprob) for t in sampling.watch_token_ids if t in step}
            for step in steps
        ]
    if sampling.margins:
        margins = [_margin(step) for step in steps]
    return Generation(
        token_ids=token_ids,
        logprobs=logprobs,
        hit_token_limit=completion.finish_reason == "length",
        prompt_tokens=prompt_len,
        cached_prompt_tokens=int(out.num_cached_tokens or 0),
        watched=watched,
        margins=margins,
        stopped=stopped,
    )


def _margin(step: dict[int, Any]) -> float:
    """Top-1 minus top-2 logprob of one step (``logprobs=2``: the two best, plus the sampled)."""
    best = sorted((float(lp.logprob) for lp in step.values()), reverse=True)
    return best[0] - best[1] if len(best) > 1 else float("inf")


_ABORT_POLL_S = 0.002  # how often a stop re-sends its abort until every request is back
PARENT_POLL_S = 0.25  # how soon an orphaned engine core notices
_VLLM_ENGINE_CORE: Any = None  # vLLM's own entry point, for engine cores started by fork


@contextlib.contextmanager
def _engine_core_dies_with_this_process() -> Iterator[None]:
    """Engine cores started inside run ``_engine_core``, bound to this process's life.

    vLLM looks its entry point up as ``EngineCoreProc.run_engine_core`` when it starts the
    process, and pickles it for ``spawn`` (its CPU build's start method): a module-level
    function with the parent's pid bound survives both ``spawn`` and ``fork``.
    """
    global _VLLM_ENGINE_CORE
    from vllm.v1.engine.core import EngineCoreProc

    original = EngineCoreProc.__dict__["run_engine_core"]
    _VLLM_ENGINE_CORE = original.__func__
    EngineCoreProc.run_engine_core = staticmethod(functools.partial(_engine_core, os.getpid()))
    try:
        yield
    finally:
        EngineCoreProc.run_engine_core = original


def _engine_core(parent: int, *args: Any, **kwargs: Any) -> None:
    """The engine-core process: vLLM's engine core, which dies with ``parent``."""
    os.setpgid(0, 0)
    threading.Thread(
        target=_die_with, args=(parent,), name="erank-parent-watch", daemon=True
    ).start()
    run = _VLLM_ENGINE_CORE  # set in a forked child; a spawned one imported vLLM afresh
    if run is None:
        from vllm.v1.engine.core import EngineCoreProc

        run = EngineCoreProc.run_engine_core
    run(*args, **kwargs)


def _die_with(parent: int) -> None:
    """Once ``parent`` is gone (this process re-parented), SIGKILL this process tree."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Children first, then theirs (Linux ``/proc``; empty where it is missing)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]
