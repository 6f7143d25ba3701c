"""End to end through a real grpc.aio channel to the real vLLM CPU engine (tiny random model)."""

from __future__ import annotations

import asyncio
import gc
import math
import re
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.instructions import PRESETS
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


def docs(n: int, with_scores: bool = True) -> list[pb.Document]:
    out = []
    for i in range(n):
        d = pb.Document(id=f"doc-{i}", text=f"document number {i} about search and ranking")
        if with_scores:
            d.first_stage_score = float(n - i) * 1.5
        out.append(d)
    return out


async def test_health_is_serving_after_warmup(tiny_server: ScoringServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tiny_server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "erank.v1.Reranker"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_full_collection_skips_what_loading_made(tiny_server: ScoringServer) -> None:
    """Loading leaves millions of objects that live as long as the process; a full collection
    that scanned them held the loop (and every refusal behind it) for 0.5 s and more under a
    burst. Frozen after warm-up, they are out of the collector's sight."""
    began = time.perf_counter()
    gc.collect()
    took = time.perf_counter() - began
    print(f"\n{gc.get_freeze_count()} objects frozen; a full collection took {took * 1000:.0f} ms")
    assert gc.get_freeze_count() > 100_000
    assert took < 0.25


def list_by_reflection(port: int) -> tuple[set[str], str]:
    """What a reflection client (as grpcurl uses) sees: service names, file of the service."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        return services, db.FindFileContainingSymbol("erank.v1.Reranker").name


async def test_reflection_lists_the_service(tiny_server: ScoringServer) -> None:
    # The blocking reflection client runs in a thread: the server needs this event loop.
    services, file = await asyncio.to_thread(list_by_reflection, tiny_server.port)
    assert {"erank.v1.Reranker", "grpc.health.v1.Health"} <= services
    assert file == "erank/v1/reranker.proto"


async def test_model_info(tiny_client: AsyncRerankerClient, tiny_server: ScoringServer) -> None:
    info = await tiny_client.model_info()
    assert info.model == tiny_server.settings.model
    assert info.backend == "vllm"
    assert info.template_version == "erank-v2"
    assert info.max_new_tokens == 256  # the tests' cap; the default is the reference's 4096
    presets = {p.name: p for p in info.instruction_presets}
    assert presets["beir"].instruction == "Given a query, retrieval relevant passage."
    assert presets["beir"].source == "arXiv 2509.00520, Table 7"
    assert presets["default"].instruction == info.default_instruction
    assert info.default_alpha == pytest.approx(0.2)
    assert info.max_documents == 1000 and info.default_truncate_length == 2048
    assert info.max_model_len == 8192


async def test_rerank_returns_every_document_fused_and_ordered(
    tiny_client: AsyncRerankerClient, tiny_server: ScoringServer
) -> None:
    request = pb.RerankRequest(query="how do rerankers work", documents=docs(6))
    response = await tiny_client.rerank(request)
    assert sorted(r.id for r in response.results) == [d.id for d in request.documents]
    assert response.ordered_by == pb.ORDERING_HYBRID_SCORE
    hybrid = [r.hybrid_score for r in response.results]
    assert hybrid == sorted(hybrid, reverse=True)
    for r in response.results:
        assert r.first_stage_score == request.documents[r.index].first_stage_score
        assert r.id == request.documents[r.index].id
        assert math.isfinite(r.hybrid_score)
        if r.status == pb.RESULT_STATUS_NO_ANSWER:
            assert r.rank_score == 0.0 and r.status_detail
        else:
            assert r.rank_score == pytest.approx(r.answer * r.answer_probability)
    assert response.usage.prompt_tokens > 0 and response.usage.generated_tokens > 0
    assert response.model == tiny_server.settings.model


async def test_without_first_stage_scores_orders_by_rank_score(
    tiny_client: AsyncRerankerClient,
) -> None:
    request = pb.RerankRequest(query="q", documents=docs(4, with_scores=False), top_n=2)
    response = await tiny_client.rerank(request)
    assert response.ordered_by == pb.ORDERING_RANK_SCORE
    assert len(response.results) == 2
    assert all(not r.HasField("hybrid_score") for r in response.results)
    scores = [(r.rank_score, -r.index) for r in response.results]
    assert scores == sorted(scores, reverse=True)


async def test_partial_first_stage_scores_are_not_fused_and_say_so(
    tiny_client: AsyncRerankerClient,
) -> None:
    documents = docs(3)
    documents[1].ClearField("first_stage_score")
    response = await tiny_client.rerank(pb.RerankRequest(query="q", documents=documents))
    assert response.ordered_by == pb.ORDERING_RANK_SCORE
    assert "1 of 3 documents have no first_stage_score" in response.notice
    assert all(not r.HasField("hybrid_score") for r in response.results)


async def test_prefix_cache_serves_the_shared_prompt_prefix(
    tiny_client: AsyncRerankerClient,
) -> None:
    query = "a query shared by every prompt " * 4
    await tiny_client.rerank(pb.RerankRequest(query=query, documents=docs(8)))
    # New documents (a repeated pair would come from the score cache without engine work).
    others = [pb.Document(id=f"other-{i}", text=f"another text {i} on ranking") for i in range(8)]
    again = await tiny_client.rerank(pb.RerankRequest(query=query, documents=others))
    assert again.usage.cache_misses == 8
    assert again.usage.cached_prompt_tokens > again.usage.prompt_tokens // 2


async def test_a_preset_is_its_instruction_word_for_word(tiny_client: AsyncRerankerClient) -> None:
    def request(**instruction: str) -> pb.RerankRequest:
        query = "which preset is this"
        return pb.RerankRequest(
            query=query, documents=docs(2), return_reasoning=True, **instruction
        )

    named = await tiny_client.rerank(request(instruction_preset="bright_leetcode"))
    spelled = await tiny_client.rerank(request(instruction=PRESETS["bright_leetcode"]))
    default = await tiny_client.rerank(request())
    # The score cache is keyed by the prompt's token ids: the spelled-out text hits what the
    # preset scored, so both prompts are the same tokens; the default instruction's are not.
    assert (named.usage.cache_misses, spelled.usage.cache_hits, default.usage.cache_misses) == (
        2,
        2,
        2,
    )
    assert [(r.id, r.rank_score, r.reasoning) for r in named.results] == [
        (r.id, r.rank_score, r.reasoning) for r in spelled.results
    ]


async def test_truncation_is_reported_per_document(tiny_client: AsyncRerankerClient) -> None:
    documents = [
        pb.Document(id="short", text="short"),
        pb.Document(id="long", text="ranking " * 400),
    ]
    request = pb.RerankRequest(
        query="q", documents=documents, truncate_length=16, return_reasoning=True
    )
    by_id = {r.id: r for r in (await tiny_client.rerank(request)).results}
    assert by_id["long"].truncated and not by_id["short"].truncated
    cut = re.search(r"document cut to 16 of (\d+) tokens", by_id["long"].status_detail)
    assert cut is not None and int(cut.group(1)) >= 400
    assert by_id["long"].status in (pb.RESULT_STATUS_TRUNCATED_INPUT, pb.RESULT_STATUS_NO_ANSWER)
    assert by_id["short"].HasField("reasoning")


BAD_REQUESTS = [
    (pb.RerankRequest(query=" ", documents=docs(1)), "query", "must not be empty"),
    (pb.RerankRequest(query="q"), "documents", "at least one"),
    (pb.RerankRequest(query="q", documents=docs(1001)), "documents", "limit is 1000"),
    (
        pb.RerankRequest(query="q", documents=[pb.Document(id="a", text="x" * 100_001)]),
        "documents[0].text",
        "limit is 100000",
    ),
    (pb.RerankRequest(query="q" * 100_001, documents=docs(1)), "query", "limit is 100000"),
    (
        pb.RerankRequest(query="q", documents=[pb.Document(id="a"), pb.Document(id="a")]),
        "documents[1].id",
        "duplicates documents[0].id",
    ),
    (pb.RerankRequest(query="q", documents=[pb.Document(text="t")]), "documents[0].id", "empty"),
    (
        pb.RerankRequest(
            query="q", documents=[pb.Document(id="a", first_stage_score=float("nan"))]
        ),
        "documents[0].first_stage_score",
        "finite",
    ),
    (pb.RerankRequest(query="q", documents=docs(1), alpha=1.5), "alpha", "[0, 1]"),
    (pb.RerankRequest(query="q", documents=docs(1), alpha=-0.1), "alpha", "[0, 1]"),
    (
        pb.RerankRequest(query="q", documents=docs(1), truncate_length=100_000),
        "truncate_length",
        "limit is 8192",
    ),
    (
        pb.RerankRequest(
            query="long " * 5000,
            documents=[pb.Document(id="a", text="doc " * 5000)],
            truncate_length=8000,
        ),
        "documents[0]",
        "max_model_len 8192",
    ),
    (
        pb.RerankRequest(query="q", documents=docs(1), instruction_preset="msmarco"),
        "instruction_preset",
        "known: default, beir, trec_dl",
    ),
    (
        pb.RerankRequest(query="q", documents=docs(1), instruction_preset="beir", instruction="x"),
        "instruction_preset",
        "not both",
    ),
]


@pytest.mark.parametrize(("request_", "field", "limit"), BAD_REQUESTS)
async def test_bad_requests_are_invalid_argument_naming_field_and_limit(
    tiny_server: ScoringServer, request_: pb.RerankRequest, field: str, limit: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tiny_server.port}") as channel:
        call = channel.unary_unary(
            "/erank.v1.Reranker/Rerank",
            request_serializer=pb.RerankRequest.SerializeToString,
            response_deserializer=pb.RerankResponse.FromString,
        )(request_, timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{field}: " in err.value.details() and limit in err.value.details()
        status = await rpc_status.aio.from_call(call)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert any(v.field == field and limit in v.description for v in bad.field_violations)


async def test_deadline_aborts_engine_requests(
    tiny_client: AsyncRerankerClient, tiny_server: ScoringServer
) -> None:
    backend = tiny_server.backend
    assert backend is not None
    # All or nothing (the default, DEADLINE_POLICY_CUT, answers by the deadline: test_anytime.py)
    request = pb.RerankRequest(
        query="q", documents=docs(200), deadline_policy=pb.DEADLINE_POLICY_FAIL
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tiny_client.rerank(request, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):  # the server notices the cancellation asynchronously
        if backend.running_requests() == 0:
            break
        await asyncio.sleep(0.05)
    assert backend.running_requests() == 0


async def test_client_going_away_aborts_engine_requests(
    tiny_client: AsyncRerankerClient, tiny_server: ScoringServer
) -> None:
    backend = tiny_server.backend
    assert backend is not None
    call = tiny_client.stub.Rerank(pb.RerankRequest(query="q", documents=docs(200)))
    for _ in range(200):
        if backend.running_requests() > 0:
            break
        await asyncio.sleep(0.02)
    assert backend.running_requests() > 0
    call.cancel()
    for _ in range(100):
        if backend.running_requests() == 0:
            break
        await asyncio.sleep(0.05)
    assert backend.running_requests() == 0


async def test_a_call_may_ask_for_no_deadline_or_its_own(tiny_server: ScoringServer) -> None:
    """The clients' deadlines, as the server sees them (``completions.deadline_ms``, 0: none):
    the client's default, a call's own (``None``: no deadline, even where the client has one),
    and a client without a default. The blocking twin alike."""
    from erank_contract.client import RerankerClient

    def request() -> pb.RerankRequest:
        return pb.RerankRequest(query="q", documents=[pb.Document(id="a", text="deadline")])

    def near(ms: int, seconds: int) -> bool:  # gRPC's deadline propagation rounds (up to ~1 s)
        return abs(ms - seconds * 1000) <= 1500

    address = f"127.0.0.1:{tiny_server.port}"
    async with AsyncRerankerClient(address, timeout=100) as client:
        assert near((await client.rerank(request())).completions.deadline_ms, 100)
        assert (await client.rerank(request(), timeout=None)).completions.deadline_ms == 0
        own = (await client.rerank(request(), timeout=50)).completions.deadline_ms
        assert near(own, 50)
    async with AsyncRerankerClient(address, timeout=None) as client:
        assert (await client.rerank(request())).completions.deadline_ms == 0
    with RerankerClient(address, timeout=100) as blocking:
        answer = await asyncio.to_thread(blocking.rerank, request(), None)
        assert answer.completions.deadline_ms == 0
        answer = await asyncio.to_thread(blocking.rerank, request())
        assert near(answer.completions.deadline_ms, 100)
