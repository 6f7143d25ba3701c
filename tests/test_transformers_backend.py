"""The transformers backend against the vLLM backend: same prompts, same tokens, same scores.

On the scripted checkpoint every mode must give the same answers and probabilities (1e-4). On
the tiny random one the two engines must write the same tokens up to the first step where either
one's top-2 logprob margin is below 1e-3: there float differences between the engines' kernels
may break a near-tie, and nothing else may make them differ. The vLLM margins come from
``logprobs=2`` (greedy: the sampled token is the top-1, the second entry the runner-up); the
transformers backend computes them from the same raw log-softmax.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from conftest import LONG_DOCUMENT, engine_settings

from erank.backends import Sampling
from erank.backends.transformers import TransformersBackend
from erank.prompt import PromptBuilder
from erank.scorer import Scorer
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

NEAR_TIE = 1e-3
MODES = [
    (pb.SCORING_MODE_FULL, None),
    (pb.SCORING_MODE_THINKING_BUDGET, 6),
    (pb.SCORING_MODE_SCORE_ONLY, None),
]


@pytest.fixture(scope="module")
def hf_branch(branch_checkpoint: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(engine_settings(branch_checkpoint, backend="transformers"))
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def hf_random(random_checkpoint: Path) -> Iterator[TransformersBackend]:
    backend = TransformersBackend(engine_settings(random_checkpoint, backend="transformers"))
    yield backend
    backend.shutdown()


@pytest_asyncio.fixture(scope="module")
async def hf_server(
    branch_checkpoint: Path, hf_branch: TransformersBackend
) -> AsyncIterator[ScoringServer]:
    settings = engine_settings(branch_checkpoint, backend="transformers")
    async with running_server(settings, hf_branch) as server:
        yield server


def mode_request(mode: int, budget: int | None) -> pb.RerankRequest:
    docs = [
        pb.Document(id="plain", text="a plain document", first_stage_score=1.0),
        pb.Document(id="long", text=LONG_DOCUMENT, first_stage_score=2.0),
    ]
    r = pb.RerankRequest(query="parity", documents=docs, mode=mode, return_reasoning=True)  # type: ignore[arg-type]
    if budget is not None:
        r.thinking_budget = budget
    return r


async def test_scripted_parity_in_every_mode(
    branch_server: ScoringServer, hf_server: ScoringServer
) -> None:
    async with (
        AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as vllm,
        AsyncRerankerClient(f"127.0.0.1:{hf_server.port}", timeout=120) as hf,
    ):
        assert (await hf.model_info()).backend == "transformers"
        for mode, budget in MODES:
            a = await vllm.rerank(mode_request(mode, budget))
            b = await hf.rerank(mode_request(mode, budget))
            assert [r.id for r in a.results] == [r.id for r in b.results]
            for x, y in zip(a.results, b.results, strict=True):
                assert (x.answer, x.status, x.mode, x.reasoning) == (
                    y.answer,
                    y.status,
                    y.mode,
                    y.reasoning,
                )
                assert x.answer == 10
                assert x.answer_probability == pytest.approx(y.answer_probability, abs=1e-4)
                assert x.hybrid_score == pytest.approx(y.hybrid_score, abs=1e-3)
            assert a.usage.generated_tokens == b.usage.generated_tokens


async def test_random_model_same_tokens_up_to_a_near_tie(
    tiny_server: ScoringServer, hf_random: TransformersBackend
) -> None:
    vllm = tiny_server.backend
    assert vllm is not None
    builder = PromptBuilder(hf_random.tokenizer)
    texts = [f"document {i}: " + "search ranking relevance " * (i + 1) for i in range(6)]
    prompts = [p.token_ids for p in builder.build("inst", "a query", texts, 256)]
    sampling = Sampling(48, margins=True)
    a = await vllm.generate(prompts, sampling)
    b = await hf_random.generate(prompts, sampling)
    compared = 0
    for x, y in zip(a, b, strict=True):
        assert x.margins is not None and y.margins is not None
        for step in range(min(len(x.token_ids), len(y.token_ids))):
            assert x.token_ids[step] == y.token_ids[step], f"step {step} differs"
            assert x.logprobs[step] == pytest.approx(y.logprobs[step], abs=1e-3)
            compared += 1
            if min(x.margins[step], y.margins[step]) < NEAR_TIE:
                break  # the next token may legitimately differ
        else:
            assert len(x.token_ids) == len(y.token_ids)  # same stop (EOS) or same limit
    assert compared > len(prompts) * 48 // 2  # the comparison is not vacuous


async def test_batching_and_left_padding_change_nothing(hf_random: TransformersBackend) -> None:
    builder = PromptBuilder(hf_random.tokenizer)
    texts = ["short", "a much longer document " * 12, "middle length text here"]
    prompts = [p.token_ids for p in builder.build("inst", "q", texts, 256)]
    batched = await hf_random.generate(prompts, Sampling(16))
    for prompt, together in zip(prompts, batched, strict=True):
        (alone,) = await hf_random.generate([prompt], Sampling(16))
        assert alone.token_ids == together.token_ids
        assert alone.logprobs == pytest.approx(together.logprobs, abs=1e-4)


async def test_cancelling_stops_the_worker(hf_branch: TransformersBackend) -> None:
    """20 documents of ~212 tokens each (3 batches); cancelled at once, nothing finishes."""
    builder = PromptBuilder(hf_branch.tokenizer)
    texts = [f"{i}{LONG_DOCUMENT}" for i in range(20)]
    prompts = [p.token_ids for p in builder.build("i", "q", texts, 256)]
    finished = hf_branch.counters.finished
    task = asyncio.ensure_future(hf_branch.generate(prompts, Sampling(256)))
    await asyncio.sleep(0.2)
    assert hf_branch.running_requests() == len(prompts)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the worker notices at its next step
        if hf_branch.running_requests() == 0:
            break
        await asyncio.sleep(0.05)
    assert hf_branch.running_requests() == 0
    assert hf_branch.counters.finished == finished  # nothing ran to the end


def test_scorer_builds_on_either_backend(hf_branch: TransformersBackend) -> None:
    scorer = Scorer(hf_branch, engine_settings(Path("unused"), backend="transformers"))
    assert scorer.model_info().backend == "transformers"
    assert len(scorer.digit_ids()) == 10
