"""Fast modes (thinking budget, score-only) give the answer and probability computed by hand.

The branching scripted checkpoint (conftest) is a bigram chain for prompts without " sofa": its
next-token distributions are recomputed here with numpy from the saved weights, independently of
vLLM, transformers and the model code. With " sofa" in the document it reasons for 200 filler
tokens, which a thinking budget cuts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import LONG_DOCUMENT, engine_settings
from safetensors.numpy import load_file

from erank.backends import Sampling, load_tokenizer
from erank.backends.transformers import TransformersBackend
from erank.score import parse_answer, score_only_answer
from erank.scorer import Scorer
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

FULL, BUDGET, SCORE_ONLY = (
    pb.SCORING_MODE_FULL,
    pb.SCORING_MODE_THINKING_BUDGET,
    pb.SCORING_MODE_SCORE_ONLY,
)


class Chain:
    """Next-token distributions of a scripted checkpoint for prompts without its trigger."""

    def __init__(self, path: Path) -> None:
        w = load_file(str(path / "model.safetensors"))
        self.embed = w["model.embed_tokens.weight"].astype(np.float64)
        self.norm = w["model.norm.weight"].astype(np.float64)
        self.head = w["lm_head.weight"].astype(np.float64)
        self.eps = float(json.loads((path / "config.json").read_text())["rms_norm_eps"])
        self.tokenizer = load_tokenizer(str(path), None)

    def prob(self, prev: str, nxt: str) -> float:
        (a,) = self.tokenizer.encode(prev, add_special_tokens=False)
        (b,) = self.tokenizer.encode(nxt, add_special_tokens=False)
        h = self.embed[a]
        h = h / np.sqrt(np.mean(h * h) + self.eps) * self.norm
        logits = self.head @ h
        p = np.exp(logits - logits.max())
        return float(p[b] / p.sum())

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))


def request(mode: int, budget: int | None = None, *docs: str, query: str = "q") -> pb.RerankRequest:
    r = pb.RerankRequest(
        query=query,
        documents=[pb.Document(id=f"d{i}", text=t) for i, t in enumerate(docs)],
        mode=mode,  # type: ignore[arg-type]
        return_reasoning=True,
    )
    if budget is not None:
        r.thinking_budget = budget
    return r


async def test_every_mode_gives_the_computed_answer_and_probability(
    branch_server: ScoringServer, branch_checkpoint: Path
) -> None:
    chain = Chain(branch_checkpoint)
    expected = chain.prob("<answer>", "1") * chain.prob("1", "0")
    assert 0.1 < expected < 0.5  # far from certain: the probability is really read
    script = chain.ids("<think>ok</think><answer>10</answer><|im_end|>")  # ends its turn
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        for mode, budget, tokens in [
            (FULL, None, len(script)),
            (BUDGET, 8, len(script)),  # "ok" is within the budget: same as full
            (SCORE_ONLY, None, 2),  # the digit step, then the step that tells 10 from 1
        ]:
            response = await client.rerank(request(mode, budget, "plain text", query="modes"))
            (r,) = response.results
            assert (r.answer, r.status, r.mode, r.cached) == (10, pb.RESULT_STATUS_OK, mode, False)
            assert r.answer_probability == pytest.approx(expected, abs=1e-4)
            assert r.rank_score == pytest.approx(10 * expected, abs=1e-3)
            assert response.usage.generated_tokens == tokens
            assert r.reasoning == ("" if mode == SCORE_ONLY else "<think>ok</think>")


async def test_thinking_budget_cuts_long_reasoning(branch_server: ScoringServer) -> None:
    chain = Chain(Path(branch_server.settings.model))
    close = len(chain.ids("</think><answer>"))  # forced by the engine
    answer = len(chain.ids("10</answer><|im_end|>"))
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        full = await client.rerank(request(FULL, None, LONG_DOCUMENT, query="budget"))
        for budget in (0, 5, 32):
            response = await client.rerank(request(BUDGET, budget, LONG_DOCUMENT, query="budget"))
            (r,) = response.results
            assert (r.answer, r.status, r.mode) == (10, pb.RESULT_STATUS_OK, BUDGET)
            # "<think>", B reasoning tokens, then the forced close and the model's own answer
            assert response.usage.generated_tokens == 1 + budget + close + answer
            assert r.answer_probability == pytest.approx(
                full.results[0].answer_probability, abs=1e-3
            )
    assert full.usage.generated_tokens == 1 + 200 + len(chain.ids("ok")) + close + answer


async def test_server_default_mode_and_budget(branch_server: ScoringServer) -> None:
    settings = engine_settings(
        Path(branch_server.settings.model),
        default_mode="thinking_budget",
        default_thinking_budget=3,
    )
    async with (
        running_server(settings, branch_server.backend) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=120) as client,
    ):
        info = await client.model_info()
        assert (info.default_mode, info.default_thinking_budget) == (BUDGET, 3)
        response = await client.rerank(
            pb.RerankRequest(query="default", documents=[pb.Document(id="a", text=LONG_DOCUMENT)])
        )
        (r,) = response.results
        assert r.mode == BUDGET and r.answer == 10
        assert response.usage.generated_tokens < 20


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (
            pb.RerankRequest(query="q", documents=[pb.Document(id="a")], thinking_budget=5),
            "thinking_budget",
        ),
        (pb.RerankRequest(query="q", documents=[pb.Document(id="a")], mode=7), "mode"),  # type: ignore[arg-type]
    ],
)
async def test_bad_mode_fields_are_invalid_argument(
    branch_server: ScoringServer, req: pb.RerankRequest, field: str
) -> None:
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.rerank(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}: " in (err.value.details() or "")


async def test_transformers_backend_on_the_seven_checkpoint(scripted7_checkpoint: Path) -> None:
    """No vLLM: the same modes on the single-digit script, against the computed probability."""
    chain = Chain(scripted7_checkpoint)
    expected = chain.prob("<answer>", "7")
    backend = TransformersBackend(engine_settings(scripted7_checkpoint, backend="transformers"))
    scorer = Scorer(backend, engine_settings(scripted7_checkpoint, backend="transformers"))
    try:
        for mode, budget, reasoning in [
            (FULL, None, "<think>scripted</think>"),
            (BUDGET, 0, "<think></think>"),
            (SCORE_ONLY, None, ""),
        ]:
            response = await scorer.rerank(request(mode, budget, "doc", query="seven"))
            (r,) = response.results
            assert (r.answer, r.mode, r.reasoning) == (7, mode, reasoning)
            assert r.answer_probability == pytest.approx(expected, abs=1e-4)
        assert backend.counters.requests == 3  # score-only: 7 needs no second step
        # The raw step: the digit logprobs a score-only request reads.
        digits = scorer.digit_ids()
        prompt = scorer.prompts.build("i", "q", ["d"], 64, suffix="<think>\n\n</think>\n\n<answer>")
        (g,) = await backend.generate(
            [prompt[0].token_ids], Sampling(1, watch_token_ids=tuple(digits))
        )
        assert g.watched is not None
        assert math.exp(g.watched[0][digits[7]]) == pytest.approx(expected, abs=1e-5)
    finally:
        backend.shutdown()


def test_score_only_rule() -> None:
    lps = [math.log(p or 1e-9) for p in (0.01, 0.5, 0.2, 0, 0, 0, 0, 0.2, 0, 0.09)]
    assert (score_only_answer(lps).answer, score_only_answer(lps).probability) == (
        1,
        pytest.approx(0.5),
    )
    ten = score_only_answer(lps, math.log(0.6))
    assert (ten.answer, ten.probability) == (10, pytest.approx(0.3))
    tie = [math.log(0.3)] * 2 + [-math.inf] * 8
    assert score_only_answer(tie).answer == 0  # ties: the smaller digit


def test_answer_after_a_forced_reopening_counts() -> None:
    """A budget forced inside the model's own answer: the answer after the last <answer> counts."""
    pieces = ["<answer>", "7", "</think>", "<answer>", "3", "</answer>"]
    parsed = parse_answer(pieces, [0.0, math.log(0.9), 0.0, 0.0, math.log(0.4), 0.0])
    assert (parsed.answer, parsed.probability) == (3, pytest.approx(0.4))
