"""Deadline-aware ("anytime") scoring on the real vLLM engine: every document scored in time.

The checkpoint reasons for 400 filler tokens before it answers 7 (a bigram chain, see
erank/checkpoints.py), so a deadline shorter than that full reasoning falls mid-reasoning and a
cut is visible. Each test first measures what the full reasoning takes on this machine, then
sets its deadlines as fractions of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from conftest import engine_settings
from test_fast_modes import Chain

from erank.backends import Generation, Sampling
from erank.checkpoints import Script, TinyConfig, build_scripted_checkpoint
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

THINK = 400
LONG = Script(text="<think>ok</think><answer>7</answer>", think_tokens=THINK)
SEATS = 4  # engine sequences: four documents run at once, the rest wait for a seat
CUT, FULL, UNSCORED = pb.COMPLETION_CUT, pb.COMPLETION_FULL, pb.COMPLETION_UNSCORED
_fresh = iter(range(1_000_000))


@pytest.fixture(scope="module")
def long_checkpoint() -> Path:
    return build_scripted_checkpoint(LONG, TinyConfig(hidden_size=512))


@pytest_asyncio.fixture(scope="module")
async def server(long_checkpoint: Path) -> AsyncIterator[ScoringServer]:
    settings = engine_settings(long_checkpoint, max_new_tokens=THINK + 64, max_num_seqs=SEATS)
    async with running_server(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def client(server: ScoringServer) -> AsyncIterator[AsyncRerankerClient]:
    async with AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=120) as c:
        yield c


def request(n: int, best_last: bool = False, **fields: object) -> pb.RerankRequest:
    """``n`` documents never seen before (no cache hit), best first-stage score first (or
    last: then the engine's arrival order and the first stage's disagree)."""
    tag = next(_fresh)
    docs = [
        pb.Document(
            id=f"d{i}",
            text=f"document {i} of request {tag}",
            first_stage_score=i if best_last else n - i,
        )
        for i in range(n)
    ]
    return pb.RerankRequest(query=f"query {tag}", documents=docs, **fields)  # type: ignore[arg-type]


async def full_seconds(client: AsyncRerankerClient, n: int) -> float:
    """What ``n`` documents take with their full reasoning (and a check that nothing is cut)."""
    began = time.monotonic()
    response = await client.rerank(request(n))
    assert [r.completion for r in response.results] == [FULL] * n
    assert {r.thinking_tokens for r in response.results} == {THINK + 3}  # <think>, fillers, ok
    return time.monotonic() - began


async def test_a_deadline_mid_reasoning_scores_every_document_inside_it(
    client: AsyncRerankerClient,
) -> None:
    full = await full_seconds(client, SEATS)
    budget = 0.5 * full
    await client.rerank(request(SEATS), timeout=budget)  # the closing margin learns this load
    began = time.monotonic()
    # The gRPC deadline alone: the server must answer before it, or this raises.
    response = await client.rerank(request(SEATS), timeout=budget)
    took = time.monotonic() - began
    results = response.results
    assert took < budget
    assert len(results) == SEATS
    assert all(r.completion == CUT for r in results), [r.completion for r in results]
    assert all(0 < r.thinking_tokens < THINK for r in results)
    assert all(r.answer == 7 and r.status == pb.RESULT_STATUS_OK for r in results)
    c = response.completions
    assert (c.full, c.cut, c.unscored) == (0, SEATS, 0)
    assert 0 < c.deadline_ms <= round(budget * 1000) and c.closing_margin_ms > 0


async def test_a_cut_answer_is_what_the_engine_gives_for_the_same_prefix(
    client: AsyncRerankerClient, server: ScoringServer, long_checkpoint: Path
) -> None:
    full = await full_seconds(client, 1)
    cut_request = request(1, budget_ms=max(1, int(full * 400)))
    (cut,) = (await client.rerank(cut_request)).results
    assert cut.completion == CUT and 0 < cut.thinking_tokens < THINK
    # Independently: the engine asked directly with the prompt, the first k tokens of the full
    # reasoning and the closing tokens.
    scorer = server.service.scorer
    assert scorer is not None
    prompt = (await scorer.prepare(cut_request)).prompts[0].token_ids
    backend = scorer.backend
    (whole,) = await backend.generate([prompt], Sampling(THINK + 64))
    k = cut.thinking_tokens
    close = backend.tokenizer.encode("</think><answer>", add_special_tokens=False)
    (answer,) = await backend.generate([[*prompt, *whole.token_ids[:k], *close]], Sampling(8))
    direct = scorer.parse(
        Generation(
            [*whole.token_ids[:k], *close, *answer.token_ids],
            [*whole.logprobs[:k], *[0.0] * len(close), *answer.logprobs],
            False,
            len(prompt),
            0,
        )
    )
    assert direct.answer == cut.answer == 7
    assert cut.answer_probability == pytest.approx(direct.probability, abs=1e-6)
    # and by hand from the checkpoint's weights: P("7" | "<answer>")
    by_hand = Chain(long_checkpoint).prob("<answer>", "7")
    assert cut.answer_probability == pytest.approx(by_hand, rel=1e-4)


async def test_background_completion_answers_the_same_call_in_full_from_the_cache(
    client: AsyncRerankerClient, server: ScoringServer
) -> None:
    full = await full_seconds(client, SEATS)
    again = request(SEATS, budget_ms=max(1, int(full * 400)), finish_in_background=True)
    first = await client.rerank(again)
    assert first.completions.cut == SEATS
    scorer = server.service.scorer
    assert scorer is not None
    waited = time.monotonic()
    while len(scorer.background) and time.monotonic() - waited < 120:
        await asyncio.sleep(0.1)
    second = await client.rerank(again)
    assert second.usage.cache_hits == SEATS and second.usage.generated_tokens == 0
    assert [r.completion for r in second.results] == [FULL] * SEATS
    assert all(r.cached for r in second.results)
    reference = (await client.rerank(request(1))).results[0]  # a full score, computed now
    assert {round(r.rank_score, 9) for r in second.results} == {round(reference.rank_score, 9)}


async def test_a_document_with_no_answer_by_the_deadline_is_unscored_never_dropped(
    client: AsyncRerankerClient,
) -> None:
    n = 2 * SEATS
    response = await client.rerank(request(n, budget_ms=1))
    assert len(response.results) == n
    assert response.completions.unscored == n
    assert {r.status for r in response.results} == {pb.RESULT_STATUS_UNSCORED}
    assert {r.completion for r in response.results} == {UNSCORED}
    # Unscored documents take the mean rank score in fusion: the first stage's order stands.
    assert [r.id for r in response.results] == [f"d{i}" for i in range(n)]


async def test_when_seats_are_short_better_first_stage_ranks_reason_first(
    client: AsyncRerankerClient,
) -> None:
    n = 2 * SEATS
    full = await full_seconds(client, SEATS)  # one round of seats
    late = request(n, best_last=True, budget_ms=max(1, int(full * 700)))
    response = await client.rerank(late)
    thinking = {r.id: r.thinking_tokens for r in response.results}
    best = [thinking[f"d{i}"] for i in range(SEATS, n)]  # the first stage's top half, sent last
    rest = [thinking[f"d{i}"] for i in range(SEATS)]
    assert min(best) > max(rest), thinking


async def test_deadline_policy_fail_keeps_all_or_nothing(client: AsyncRerankerClient) -> None:
    full = await full_seconds(client, 1)
    budget_ms = max(1, int(full * 300))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.rerank(
            request(1, budget_ms=budget_ms, deadline_policy=pb.DEADLINE_POLICY_FAIL)
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"budget_ms": 600_001}, "budget_ms"),
        ({"finish_in_background": True, "deadline_policy": pb.DEADLINE_POLICY_FAIL}, "finish_in"),
        ({"deadline_policy": 7}, "deadline_policy"),
    ],
)
async def test_bad_deadline_fields_name_the_field(
    client: AsyncRerankerClient, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.rerank(request(1, **fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")
