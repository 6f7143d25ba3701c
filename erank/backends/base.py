"""What every backend shares: the sampling request, the generation it returns, the protocol.

A backend knows nothing about ERank beyond the two strings of the thinking-budget rule: the
scorer builds prompts and reads answers (erank/scorer.py, erank/score.py), backends only turn
prompt token ids into greedy generations with the engine's own logprobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from erank import metrics

THINK_START = "<think>"
# Forced when a thinking budget runs out. The engine also recognises the model's own end of
# reasoning by this exact token sequence (vLLM's rule, mirrored by the transformers backend).
THINK_END = "</think><answer>"


@dataclass(frozen=True)
class Sampling:
    """One greedy generation request, the same for every prompt of a call.

    There is no stop string: as in the reference, a generation ends at the model's end-of-turn
    token (or ``max_new_tokens``). Stopping at ``</answer>`` would save one token per document.
    """

    max_new_tokens: int
    # At most this many tokens after THINK_START, then THINK_END is forced token by token.
    thinking_budget: int | None = None
    # Also report these tokens' logprobs at every step (``Generation.watched``).
    watch_token_ids: tuple[int, ...] = ()
    # Also report the top-1 minus top-2 logprob at every step (``Generation.margins``).
    margins: bool = False
    # A ``time.monotonic()`` instant: generations not finished by then stop where they are and
    # come back with what they have (``Generation.stopped``); the deadline-aware ("anytime")
    # scoring of erank/anytime.py closes their reasoning. None: run to the end.
    stop_at: float | None = None


def as_sampling(sampling: Sampling | int) -> Sampling:
    """Accept a bare ``max_new_tokens`` (the original signature) as the full-mode request."""
    return sampling if isinstance(sampling, Sampling) else Sampling(max_new_tokens=sampling)


@dataclass(frozen=True)
class Generation:
    """One finished generation: sampled tokens, their logprobs, and prompt-cache accounting."""

    token_ids: list[int]
    logprobs: list[float]
    hit_token_limit: bool
    prompt_tokens: int
    cached_prompt_tokens: int
    watched: list[dict[int, float]] | None = None
    margins: list[float] | None = None
    # Stopped at ``Sampling.stop_at`` before it finished: ``token_ids`` are what it had.
    stopped: bool = False


# Called once per prompt as soon as its generation is finished: (index in the call, generation).
OnDone = Callable[[int, Generation], None]


@dataclass
class EngineCounters:
    """Work a backend was given (never reset); also exported as Prometheus counters."""

    backend: str
    requests: int = 0  # prompts submitted to the engine
    finished: int = 0  # of those, generations that finished (stop or token limit)
    generated_tokens: int = 0

    def submitted(self, n: int) -> None:
        self.requests += n
        metrics.ENGINE_REQUESTS.labels(self.backend).inc(n)

    def done(self, generation: Generation) -> None:
        self.finished += 1
        self.generated_tokens += len(generation.token_ids)
        metrics.GENERATED_TOKENS.labels(self.backend).inc(len(generation.token_ids))


class Backend(Protocol):
    """What the scorer needs from an engine."""

    name: str
    tokenizer: Any
    max_model_len: int
    counters: EngineCounters

    async def generate(
        self,
        prompts: Sequence[list[int]],
        sampling: Sampling | int,
        on_done: OnDone | None = None,
        priorities: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Generations in prompt order; cancelling the call stops its unfinished prompts.

        ``priorities`` (lower first; erank/anytime.py computes them) order the prompts of every
        call when the engine is full: nearer deadlines and better first-stage ranks first.
        ``on_done`` is called for finished generations only, never for stopped ones.
        """
        ...

    def running_requests(self) -> int: ...

    def shutdown(self) -> None: ...


def load_tokenizer(model: str, revision: str | None) -> Any:
    """The model's Hugging Face tokenizer (with its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)
