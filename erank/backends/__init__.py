"""Engine backends: turn prompt token ids into greedy generations with per-token logprobs.

``vllm`` (the scoring server's engine) and ``transformers`` (the same generations without vLLM)
share everything else: prompt, truncation, answer parsing and scoring live in the scorer.
"""

from __future__ import annotations

from erank.backends.base import (
    THINK_END,
    THINK_START,
    Backend,
    EngineCounters,
    Generation,
    OnDone,
    Sampling,
    load_tokenizer,
)
from erank.settings import ServerSettings

__all__ = [
    "THINK_END",
    "THINK_START",
    "Backend",
    "EngineCounters",
    "Generation",
    "OnDone",
    "Sampling",
    "create_backend",
    "load_tokenizer",
]


def create_backend(settings: ServerSettings) -> Backend:
    """The backend ``settings.backend`` names."""
    if settings.backend == "vllm":
        from erank.backends.vllm import VllmBackend

        return VllmBackend(settings)
    if settings.backend == "transformers":
        from erank.backends.transformers import TransformersBackend

        return TransformersBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")
