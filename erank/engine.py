"""Engine backends: turn prompt token ids into greedy generations with per-token logprobs.

A backend knows nothing about ERank; the scorer builds prompts and reads answers. The vLLM
backend drives vLLM's asyncio engine (V1 ``AsyncLLM``), started once per process: every document
of a call is submitted at once, so continuous batching and prefix caching work across documents
and across concurrent calls. A call that is cancelled (deadline passed, client gone) aborts its
engine requests, so no orphan generation keeps the device busy.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from erank.score import ANSWER_CLOSE
from erank.settings import ServerSettings


@dataclass(frozen=True)
class Generation:
    """One finished generation: sampled tokens, their logprobs, and prompt-cache accounting."""

    token_ids: list[int]
    logprobs: list[float]
    hit_token_limit: bool
    prompt_tokens: int
    cached_prompt_tokens: int


class Backend(Protocol):
    """What the scorer needs from an engine."""

    name: str
    tokenizer: Any
    max_model_len: int

    async def generate(
        self, prompts: Sequence[list[int]], max_new_tokens: int
    ) -> list[Generation]: ...

    def running_requests(self) -> int: ...

    def shutdown(self) -> None: ...


def load_tokenizer(model: str, revision: str | None) -> Any:
    """The model's Hugging Face tokenizer (with its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)


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
            disable_log_stats=True,
            **{k: v for k, v in optional.items() if v is not None},
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = load_tokenizer(settings.model, settings.revision)
        self.max_model_len = int(self.engine.model_config.max_model_len)

    def _params(self, max_new_tokens: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop=[ANSWER_CLOSE],
            include_stop_str_in_output=True,
            logprobs=0,  # the sampled token's logprob at every step
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def generate(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[Generation]:
        """Generate for all prompts concurrently; abort every unfinished one if cancelled."""
        from vllm.inputs import TokensPrompt

        params = self._params(max_new_tokens)
        call = uuid.uuid4().hex
        ids = [f"{call}-{i}" for i in range(len(prompts))]

        async def one(rid: str, prompt: list[int]) -> Generation:
            final = None
            async for out in self.engine.generate(
                TokensPrompt(prompt_token_ids=prompt), params, rid
            ):
                final = out
            assert final is not None
            return _generation(final, len(prompt))

        tasks = [asyncio.ensure_future(one(r, p)) for r, p in zip(ids, prompts, strict=True)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            unfinished = [rid for rid, t in zip(ids, tasks, strict=True) if not t.done()]
            for t in tasks:
                t.cancel()
            if unfinished:
                await asyncio.shield(self.engine.abort(unfinished))

    def running_requests(self) -> int:
        return int(self.engine.get_num_unfinished_requests())

    def shutdown(self) -> None:
        self.engine.shutdown()
        del self.engine  # a live reference makes interpreter exit print a harmless TypeError


def _generation(out: Any, prompt_len: int) -> Generation:
    completion = out.outputs[0]
    token_ids = list(completion.token_ids)
    steps = completion.logprobs or []
    logprobs = [float(step[t].logprob) for step, t in zip(steps, token_ids, strict=True)]
    if completion.finish_reason == "abort":
        raise asyncio.CancelledError(f"engine request {out.request_id} was aborted")
    return Generation(
        token_ids=token_ids,
        logprobs=logprobs,
        hit_token_limit=completion.finish_reason == "length",
        prompt_tokens=prompt_len,
        cached_prompt_tokens=int(out.num_cached_tokens or 0),
    )


def create_backend(settings: ServerSettings) -> Backend:
    """The backend ``settings.backend`` names."""
    if settings.backend == "vllm":
        return VllmBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")
