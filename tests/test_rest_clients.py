"""The REST front called by the real client libraries of the APIs it answers, behind a token.

Cohere's SDK (v1 ``AsyncClient`` → ``POST /v1/rerank``, v2 ``ClientV2`` / ``AsyncClientV2`` →
``POST /v2/rerank``) and Haystack's ``HuggingFaceTEIRanker`` (TEI's ``POST /rerank``) talk to a
front that requires a bearer token, in front of the tiny scoring server on the vLLM CPU engine.
Each client sends its token the way it does to the real service (``Authorization: Bearer``). Scores
of the random model mean nothing: the tests check that each client reads exactly what the gRPC
server answers for the same texts, and that refusals reach the client in the front's error JSON.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import cohere
import httpx
import pytest
import pytest_asyncio
from cohere.errors import BadRequestError, UnauthorizedError
from haystack import Document
from haystack.utils import Secret
from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

from connector.rest import create_app, serving
from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # Haystack must not try to phone home

TOKEN = "rest-front-test-token"
QUERY = "which texts explain reranking"
DOCUMENTS = [
    "A reranker orders the hits of a first-stage retriever by relevance.",
    "Bread rises because yeast ferments sugar.",
    "Cross-encoders and LLM rerankers read query and document together.",
    "The tide follows the moon.",
]


@pytest_asyncio.fixture(scope="module")
async def url(tiny_server: ScoringServer) -> AsyncIterator[str]:
    app = create_app(f"127.0.0.1:{tiny_server.port}", timeout=120, token=TOKEN)
    async with serving(app) as base:
        yield base


async def expected(client: AsyncRerankerClient, **fields: object) -> pb.RerankResponse:
    """The gRPC server's answer for the same query and documents."""
    documents = [pb.Document(id=str(i), text=t) for i, t in enumerate(DOCUMENTS)]
    return await client.rerank(pb.RerankRequest(query=QUERY, documents=documents, **fields))


async def test_cohere_v1_client(url: str, tiny_client: AsyncRerankerClient) -> None:
    co = cohere.AsyncClient(api_key=TOKEN, base_url=url, timeout=120)
    answer = await co.rerank(query=QUERY, documents=DOCUMENTS, top_n=2, return_documents=True)
    grpc_answer = await expected(tiny_client, top_n=2)
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (r.index, r.rank_score) for r in grpc_answer.results
    ]
    assert all(r.document is not None for r in answer.results)
    assert [r.document.text for r in answer.results if r.document] == [
        DOCUMENTS[r.index] for r in grpc_answer.results
    ]


async def test_cohere_v1_document_objects_and_rank_fields(
    url: str, tiny_client: AsyncRerankerClient
) -> None:
    """Cohere's v1 API takes document objects: ``{"text": …}`` is scored on its text (as the
    string would be), ``rank_fields`` names the keys scored (several: ``field: value`` lines),
    ``return_documents`` gives each object back as sent; an object without any of them is a 400
    naming it, and v2 (strings only, like Cohere's) refuses objects by index."""
    co = cohere.AsyncClient(api_key=TOKEN, base_url=url, timeout=120)
    objects = [{"text": t, "title": f"doc {i}"} for i, t in enumerate(DOCUMENTS)]
    answer = await co.rerank(query=QUERY, documents=objects, return_documents=True)
    grpc_answer = await expected(tiny_client)
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (r.index, r.rank_score) for r in grpc_answer.results
    ]
    assert [r.document and r.document.dict() for r in answer.results] == [
        objects[r.index] for r in grpc_answer.results
    ]
    by_title = await co.rerank(query=QUERY, documents=objects, rank_fields=["title", "text"])
    texts = [f"title: doc {i}\ntext: {t}" for i, t in enumerate(DOCUMENTS)]
    documents = [pb.Document(id=str(i), text=t) for i, t in enumerate(texts)]
    same = await tiny_client.rerank(pb.RerankRequest(query=QUERY, documents=documents))
    assert same.usage.cache_hits == len(DOCUMENTS)  # the very prompts the REST call scored
    assert [(r.index, r.relevance_score) for r in by_title.results] == [
        (r.index, r.rank_score) for r in same.results
    ]
    with pytest.raises(BadRequestError) as err:
        await co.rerank(query=QUERY, documents=[DOCUMENTS[0], {"title": "no text"}])
    assert err.value.body["error"]["reason"] == (
        "rank_fields: documents[1] has none of the fields text"
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        v2 = await http.post("/v2/rerank", json={"query": QUERY, "documents": objects[:1]})
    assert v2.status_code == 400
    assert v2.json()["error"]["reason"] == "documents[0]: Input should be a valid string"


async def test_cohere_v2_client(url: str, tiny_client: AsyncRerankerClient) -> None:
    """The blocking ``ClientV2`` (the README's example), on a thread: the front serves on this
    test's event loop."""
    co = cohere.ClientV2(api_key=TOKEN, base_url=url, timeout=120)
    answer = await asyncio.to_thread(
        co.rerank, model="erank", query=QUERY, documents=DOCUMENTS, top_n=3
    )
    grpc_answer = await expected(tiny_client, top_n=3)
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (r.index, r.rank_score) for r in grpc_answer.results
    ]
    assert answer.id and answer.meta and answer.meta.api_version
    assert answer.meta.api_version.version == "2"
    # ERank's own result fields come along (the SDK keeps unknown fields).
    assert [getattr(r, "answer", None) for r in answer.results] == [
        r.answer for r in grpc_answer.results
    ]


async def test_cohere_v2_max_tokens_per_doc_is_the_truncation(
    url: str, tiny_client: AsyncRerankerClient
) -> None:
    co = cohere.AsyncClientV2(api_key=TOKEN, base_url=url, timeout=120)
    query = f"{QUERY} {uuid.uuid4()}"  # never scored before
    cut = await co.rerank(model="erank", query=query, documents=DOCUMENTS, max_tokens_per_doc=4)
    documents = [pb.Document(id=str(i), text=t) for i, t in enumerate(DOCUMENTS)]
    same = await tiny_client.rerank(
        pb.RerankRequest(query=query, documents=documents, truncate_length=4)
    )
    # Every prompt is one the REST call already scored: the same 4-token cut.
    assert same.usage.cache_hits == len(DOCUMENTS)
    assert [(r.index, r.relevance_score) for r in cut.results] == [
        (r.index, r.rank_score) for r in same.results
    ]
    assert cut.meta and cut.meta.tokens and cut.meta.tokens.input_tokens
    with pytest.raises(BadRequestError) as err:
        await co.rerank(model="erank", query=QUERY, documents=DOCUMENTS, max_tokens_per_doc=9000)
    violations = err.value.body["error"]["violations"]
    assert violations == [
        {"field": "max_tokens_per_doc", "description": "is 9000 tokens; the limit is 8192"}
    ]


async def test_tei_client(url: str, tiny_client: AsyncRerankerClient) -> None:
    """Haystack takes the first top_k ranks, so the front must answer best first."""
    documents = [Document(content=t) for t in DOCUMENTS]
    grpc_answer = await expected(tiny_client)
    for raw, scale in ((False, 10.0), (True, 1.0)):
        ranker = HuggingFaceTEIRanker(
            url=url, top_k=3, raw_scores=raw, timeout=120, token=Secret.from_token(TOKEN)
        )
        ranked = (await ranker.run_async(query=QUERY, documents=documents))["documents"]
        assert [(d.content, d.score) for d in ranked] == [
            (DOCUMENTS[r.index], r.rank_score / scale) for r in grpc_answer.results[:3]
        ]
        assert all(0.0 <= (d.score or 0.0) <= 10.0 / scale for d in ranked)


async def test_tei_return_text_and_refusals(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, timeout=120, headers=auth) as http:
        ranks = await http.post(
            "/rerank", json={"query": QUERY, "texts": DOCUMENTS[:2], "return_text": True}
        )
        left = await http.post(
            "/rerank", json={"query": QUERY, "texts": ["a"], "truncation_direction": "Left"}
        )
        empty = await http.post("/rerank", json={"query": QUERY, "texts": []})
        long = await http.post("/rerank", json={"query": QUERY, "texts": ["a", "b" * 100_001]})
    assert ranks.status_code == 200, ranks.text
    assert sorted((r["index"], r["text"]) for r in ranks.json()) == list(enumerate(DOCUMENTS[:2]))
    assert left.status_code == 400
    assert [v["field"] for v in left.json()["error"]["violations"]] == ["truncation_direction"]
    # the server's own checks, under TEI's field names
    assert empty.status_code == long.status_code == 400
    assert empty.json()["error"]["violations"] == [
        {"field": "texts", "description": "must hold at least one document"}
    ]
    assert long.json()["error"]["violations"] == [
        {"field": "texts[1]", "description": "is 100001 characters; the limit is 100000"}
    ]


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x"])
async def test_missing_or_wrong_token_is_401(url: str, token: str | None) -> None:
    co = cohere.AsyncClientV2(api_key=token or "", base_url=url, timeout=120)
    with pytest.raises(UnauthorizedError) as err:
        await co.rerank(model="erank", query=QUERY, documents=DOCUMENTS)
    assert err.value.body["status"] == 401
    assert err.value.body["error"]["type"] == "security_exception"
    ranker = HuggingFaceTEIRanker(
        url=url, timeout=120, token=Secret.from_token(token) if token else None
    )
    with pytest.raises(RuntimeError, match="401"):
        await ranker.run_async(query=QUERY, documents=[Document(content="a")])


async def test_health_needs_no_token(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        assert (await http.get("/health")).json() == {"status": "SERVING"}
        v1 = await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
    assert v1.status_code == 401
    assert v1.headers["www-authenticate"] == 'Bearer realm="erank"'
