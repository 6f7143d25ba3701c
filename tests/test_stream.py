"""RerankStream: per-document events as soon as each answer is read, then the whole response.

The branching scripted checkpoint (conftest) answers a plain document in 12 tokens and one full
of " sofa" after ~210: the plain document's event must arrive while the engine is still working
on the other one (read from the engine's own count of unfinished requests, not from timings).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import LONG_DOCUMENT

from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


def two_docs(query: str) -> pb.RerankRequest:
    return pb.RerankRequest(
        query=query,
        documents=[
            pb.Document(id="slow", text=LONG_DOCUMENT, first_stage_score=1.0),
            pb.Document(id="fast", text="a plain document", first_stage_score=3.0),
        ],
    )


async def test_events_arrive_before_the_last_document_finishes(
    branch_server: ScoringServer,
) -> None:
    backend = branch_server.backend
    assert backend is not None
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        events: list[pb.RerankEvent] = []
        running_at_first_event = None
        async for event in client.stream(two_docs("stream me"), timeout=120):
            if not events:
                running_at_first_event = backend.running_requests()
            events.append(event)
        unary = await client.rerank(two_docs("stream me"))  # now from the cache
    assert running_at_first_event == 1  # "slow" was still generating
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["result", "result", "response"]
    first, second, last = events[0].result, events[1].result, events[2].response
    assert (first.id, first.index, second.id, second.index) == ("fast", 1, "slow", 0)
    for r in (first, second):
        assert r.answer == 10 and r.status == pb.RESULT_STATUS_OK
        assert r.mode == pb.SCORING_MODE_FULL and not r.cached
        assert not r.HasField("hybrid_score")  # needs every document
    # The final event is exactly the unary response (fused, ordered), but for the cache flags.
    assert last.ordered_by == pb.ORDERING_HYBRID_SCORE
    assert [r.id for r in last.results] == [r.id for r in unary.results]
    for a, b in zip(last.results, unary.results, strict=True):
        assert a.hybrid_score == pytest.approx(b.hybrid_score)
        assert a.answer_probability == b.answer_probability and b.cached
    assert last.usage.cache_misses == 2 and last.usage.generated_tokens > 200


async def test_cached_documents_come_first(branch_server: ScoringServer) -> None:
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        request = two_docs("half cached")
        await client.rerank(pb.RerankRequest(query="half cached", documents=[request.documents[0]]))
        events = [e async for e in client.stream(request, timeout=120)]
    assert [(e.result.id, e.result.cached) for e in events[:2]] == [
        ("slow", True),
        ("fast", False),
    ]
    assert events[2].response.usage.cache_hits == 1


async def test_cancelling_the_stream_aborts_the_engine_requests(
    branch_server: ScoringServer,
) -> None:
    backend = branch_server.backend
    assert backend is not None
    finished = backend.counters.finished
    request = two_docs("cancel me")
    request.documents.extend(
        pb.Document(id=f"slow-{i}", text=f"{i}{LONG_DOCUMENT}") for i in range(6)
    )
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        call = client.stream(request, timeout=120)
        event = await call.read()
        assert isinstance(event, pb.RerankEvent) and event.result.id == "fast"
        assert backend.running_requests() > 0
        call.cancel()
        for _ in range(100):  # the server notices the cancellation asynchronously
            if backend.running_requests() == 0:
                break
            await asyncio.sleep(0.05)
    assert backend.running_requests() == 0
    assert backend.counters.finished == finished + 1  # only "fast" ran to the end


async def test_bad_request_on_the_stream_is_invalid_argument(
    branch_server: ScoringServer,
) -> None:
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in client.stream(pb.RerankRequest(query="q"), timeout=30):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "documents: " in (err.value.details() or "")
