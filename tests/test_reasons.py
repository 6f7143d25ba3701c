"""The model's reasons on every reranked result, on each path: gRPC, the REST front, the proxy's
rewriting (shared by ``erank proxy`` and the client wrappers).

The branching scripted checkpoint (conftest ``SCRIPT_BRANCH``) writes ``<think>ok</think>``
before ``<answer>10</answer>`` for these texts: the reasoning is known exactly. Every path must
return, for every result, what the gRPC server returns for the same request, and nothing when
the caller did not ask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from connector.rest import create_app, serving
from connector.rewrite.config import ProxyConfig
from connector.rewrite.hits import HIT_FIELD, Timings, rerank_request, reranked_body
from connector.rewrite.search import SearchPlan, plan_search
from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

QUERY = "where does the cat sleep"
TEXTS = ["the cat sleeps on the sofa", "the dog plays in the garden", "Paris is in France"]
REASONING = "<think>ok</think>"


@pytest_asyncio.fixture(scope="module")
async def client(branch_server: ScoringServer) -> AsyncIterator[AsyncRerankerClient]:
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as c:
        yield c


@pytest_asyncio.fixture(scope="module")
async def http(branch_server: ScoringServer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(f"127.0.0.1:{branch_server.port}", timeout=120)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as c:
        yield c


def grpc_request(texts: list[str], scores: list[float] | None = None) -> pb.RerankRequest:
    return pb.RerankRequest(
        query=QUERY,
        documents=[
            pb.Document(id=str(i), text=t, first_stage_score=None if scores is None else scores[i])
            for i, t in enumerate(texts)
        ],
        return_reasoning=True,
    )


async def test_grpc_reasoning_only_when_asked(client: AsyncRerankerClient) -> None:
    asked = await client.rerank(grpc_request(TEXTS))
    assert [r.reasoning for r in asked.results] == [REASONING] * len(TEXTS)
    request = grpc_request(TEXTS)
    request.return_reasoning = False
    plain = await client.rerank(request)
    assert all(not r.HasField("reasoning") for r in plain.results)


async def test_rest_reasoning_equals_grpc(
    http: httpx.AsyncClient, client: AsyncRerankerClient
) -> None:
    body: dict[str, Any] = {"query": QUERY, "documents": TEXTS, "return_reasoning": True}
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    expected = await client.rerank(grpc_request(TEXTS))
    assert [(r["index"], r["reasoning"]) for r in answer.json()["results"]] == [
        (r.index, r.reasoning) for r in expected.results
    ]
    assert all(r["reasoning"] == REASONING for r in answer.json()["results"])
    body["return_reasoning"] = False
    plain = (await http.post("/v1/rerank", json=body)).json()
    assert all("reasoning" not in r for r in plain["results"])


def engine_response(texts: list[str]) -> dict[str, Any]:
    """A search answer as the engine writes it (BM25 order, ``_score`` descending)."""
    hits = [
        {"_index": "docs", "_id": f"h{i}", "_score": 10.0 - i, "_source": {"text": t}}
        for i, t in enumerate(texts)
    ]
    return {"took": 1, "hits": {"total": {"value": len(hits)}, "max_score": 10.0, "hits": hits}}


@pytest.mark.parametrize(
    "search",
    [
        {"query": {"match": {"text": QUERY}}, "explain": True},
        {"query": {"match": {"text": QUERY}}, "ext": {"erank": {"explain": True}}},
        {"query": {"match": {"text": QUERY}}},
    ],
    ids=["explain", "ext-erank-explain", "not-asked"],
)
async def test_proxy_hits_carry_the_grpc_reasoning(
    client: AsyncRerankerClient, search: dict[str, Any]
) -> None:
    plan = plan_search("docs", {}, search, ProxyConfig())
    assert isinstance(plan, SearchPlan)
    response = engine_response(TEXTS)
    request, missing = rerank_request(plan, response)
    answer = await client.rerank(request)
    body = reranked_body(plan, response, answer, missing, Timings(1.0, 2.0))
    asked = search.get("explain") is True or "ext" in search
    expected = await client.rerank(
        grpc_request(TEXTS, scores=[10.0 - i for i in range(len(TEXTS))])
    )
    reasons = {f"h{r.index}": r.reasoning for r in expected.results}
    hits = body["hits"]["hits"]
    assert len(hits) == len(TEXTS)
    for hit in hits:
        info = hit["fields"][HIT_FIELD][0]
        if asked:
            assert info["reasoning"] == reasons[hit["_id"]] == REASONING
        else:
            assert "reasoning" not in info
    assert body["ext"]["erank"]["fusion"] == "zscore"
