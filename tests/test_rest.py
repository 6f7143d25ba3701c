"""The REST front (connector/rest/) in front of a real scoring server on the vLLM CPU engine.

aiohttp serves the app on a free loopback port on the session's event loop; httpx calls it.
Scores of the tiny random model mean nothing: the tests check the contract (Cohere's shape as
ml-commons and Elasticsearch read it, floats as floats, fusion, top_n, errors naming fields) and
that the scores are exactly what the gRPC server returns for the same texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from http.client import HTTPConnection
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import engine_settings

from connector.rest import create_app, serving
from connector.rest.app import OVERHEAD
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.instructions import PRESETS
from erank_contract.v1 import reranker_pb2 as pb

QUERY = "how do rerankers work"
DOCUMENTS = [
    "A reranker scores each query-document pair with a cross-encoder or an LLM.",
    "Paris is the capital of France.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Rerankers reorder the top hits of a first-stage retriever.",
]
RESULT_KEYS = {"index", "relevance_score", "rank_score", "answer", "answer_probability", "status"}


@pytest_asyncio.fixture(scope="module")
async def rest_url(tiny_server: ScoringServer) -> AsyncIterator[str]:
    async with serving(create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)) as url:
        yield url


@pytest_asyncio.fixture
async def http(rest_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rest_url, timeout=120) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def float_fields(text: str) -> list[tuple[str, Any]]:
    """(key, value) of every number under a score key, parsed without losing int/float."""
    found: list[tuple[str, Any]] = []

    def visit(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.extend((k, v) for k, v in pairs if k.endswith(("_score", "_probability")))
        return dict(pairs)

    json.loads(text, object_pairs_hook=visit)
    return found


async def grpc_scores(
    client: AsyncRerankerClient,
    documents: list[str],
    scores: list[float] | None = None,
    alpha: float | None = None,
) -> pb.RerankResponse:
    """What the gRPC server answers for the same texts."""
    scores = scores or [None] * len(documents)  # type: ignore[list-item]
    request = pb.RerankRequest(
        query=QUERY,
        documents=[
            pb.Document(id=str(i), text=t, first_stage_score=s)
            for i, (t, s) in enumerate(zip(documents, scores, strict=True))
        ],
        alpha=alpha,
    )
    return await client.rerank(request)


async def test_cohere_shape_equals_grpc(
    http: httpx.AsyncClient, tiny_client: AsyncRerankerClient
) -> None:
    """What ml-commons' `connector.pre_process.cohere.rerank` sends, and what its post-process
    function and Elasticsearch's json paths read: one result per document, best first."""
    answer = await http.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": DOCUMENTS, "top_n": len(DOCUMENTS), "instruction": ""},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["fused"] is False and isinstance(body["model"], str) and body["model"]
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    assert all(set(r) >= RESULT_KEYS and "hybrid_score" not in r for r in results)
    assert all(r["status"] in {"ok", "no_answer", "truncated_input"} for r in results)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["relevance_score"] == r["rank_score"] for r in results)
    # floats always written as floats (ml-commons casts relevance_score to Double)
    assert all(isinstance(v, float) for _, v in float_fields(answer.text))
    expected = await grpc_scores(tiny_client, DOCUMENTS)
    assert [(r["index"], r["rank_score"], r["answer"]) for r in results] == [
        (r.index, r.rank_score, r.answer) for r in expected.results
    ]


async def test_fusion_extension(http: httpx.AsyncClient, tiny_client: AsyncRerankerClient) -> None:
    first_stage = [3.5, 1.0, 2.25, 7]
    answer = await http.post(
        "/v1/rerank",
        json={
            "query": QUERY,
            "documents": DOCUMENTS,
            "first_stage_scores": first_stage,
            "alpha": 0.5,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["fused"] is True
    for r in body["results"]:
        assert r["relevance_score"] == r["hybrid_score"]
        assert r["first_stage_score"] == float(first_stage[r["index"]])
    fused = [r["hybrid_score"] for r in body["results"]]
    assert fused == sorted(fused, reverse=True)
    assert all(isinstance(v, float) for _, v in float_fields(answer.text))
    expected = await grpc_scores(tiny_client, DOCUMENTS, scores=first_stage, alpha=0.5)
    assert [(r["index"], r["hybrid_score"]) for r in body["results"]] == [
        (r.index, r.hybrid_score) for r in expected.results
    ]


@pytest.mark.parametrize(
    ("fields", "fusion"),
    [
        ({}, pb.FUSION_ZSCORE),
        ({"fusion": "minmax"}, pb.FUSION_MINMAX),
        ({"fusion": "rrf", "rank_constant": 7}, pb.FUSION_RRF),
    ],
)
async def test_fusion_method_equals_grpc(
    http: httpx.AsyncClient,
    tiny_client: AsyncRerankerClient,
    fields: dict[str, Any],
    fusion: pb.Fusion.ValueType,
) -> None:
    first_stage = [3.5, 1.0, 2.25, 7.0]
    body = {"query": QUERY, "documents": DOCUMENTS, "first_stage_scores": first_stage, **fields}
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["fusion"] == fields.get("fusion", "zscore")
    expected = await tiny_client.rerank(
        pb.RerankRequest(
            query=QUERY,
            documents=[
                pb.Document(id=str(i), text=t, first_stage_score=s)
                for i, (t, s) in enumerate(zip(DOCUMENTS, first_stage, strict=True))
            ],
            fusion=fusion,
            rank_constant=fields.get("rank_constant"),
        )
    )
    assert expected.fusion == fusion
    assert [(r["index"], r["hybrid_score"]) for r in answer.json()["results"]] == [
        (r.index, r.hybrid_score) for r in expected.results
    ]
    unfused = (await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})).json()
    assert "fusion" not in unfused


async def test_best_passage_equals_grpc(
    http: httpx.AsyncClient, tiny_client: AsyncRerankerClient
) -> None:
    documents = [DOCUMENTS[0] * 6, DOCUMENTS[1]]
    body = {
        "query": QUERY,
        "documents": documents,
        "long_documents": "best_passage",
    }
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    expected = await tiny_client.rerank(
        pb.RerankRequest(
            query=QUERY,
            documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(documents)],
            long_documents=pb.LONG_DOCUMENTS_BEST_PASSAGE,
        )
    )
    assert [(r["index"], r["passage"]) for r in results] == [
        (
            r.index,
            {
                "index": r.passage.index,
                "start_char": r.passage.start_char,
                "end_char": r.passage.end_char,
                "count": r.passage.count,
            },
        )
        for r in expected.results
    ]
    assert all(r["passage"]["count"] == 1 for r in results)  # both fit one 2048-token passage
    plain = (await http.post("/v1/rerank", json={"query": QUERY, "documents": documents})).json()
    assert all("passage" not in r for r in plain["results"])


async def test_instruction_preset(http: httpx.AsyncClient) -> None:
    def body(**instruction: str) -> dict[str, Any]:
        return {"query": "the followir preset", "documents": DOCUMENTS[:2], **instruction}

    named = (await http.post("/v1/rerank", json=body(instruction_preset="followir"))).json()
    spelled = (await http.post("/v1/rerank", json=body(instruction=PRESETS["followir"]))).json()
    default = (await http.post("/v1/rerank", json=body())).json()

    def scores(answer: dict[str, Any]) -> list[dict[str, Any]]:  # a cached score thought 0 tokens
        return [{k: v for k, v in r.items() if k != "thinking_tokens"} for r in answer["results"]]

    assert scores(named) == scores(spelled)
    assert {r["thinking_tokens"] for r in spelled["results"]} == {0}
    # Same prompt tokens: the spelled-out instruction hits the score cache the preset filled.
    assert (named["usage"]["cache_misses"], spelled["usage"]["cache_hits"]) == (2, 2)
    assert default["usage"]["cache_misses"] == 2


async def test_top_n_and_return_documents(http: httpx.AsyncClient) -> None:
    full = (await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})).json()
    answer = await http.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": DOCUMENTS, "top_n": 2, "return_documents": True},
    )
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in full["results"][:2]]
    assert all(r["document"] == {"text": DOCUMENTS[r["index"]]} for r in top)
    assert all("document" not in r for r in full["results"])


async def test_unknown_keys_are_ignored(http: httpx.AsyncClient) -> None:
    """Cohere clients send `model`; the front must not refuse it."""
    answer = await http.post(
        "/v1/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS[:1]}
    )
    assert answer.status_code == 200, answer.text
    assert [r["index"] for r in answer.json()["results"]] == [0]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"query": " ", "documents": ["a"]}, "query", "must not be empty"),
        ({"query": "q", "documents": ["a"] * 1001}, "documents", "the limit is 1000"),
        ({"query": "q", "documents": ["a"], "alpha": 2.0}, "alpha", "must be in [0, 1]"),
        (
            {"query": "q", "documents": ["a", "b"], "first_stage_scores": [1.0]},
            "first_stage_scores",
            "1 scores for 2 documents",
        ),
        ({"query": "q", "documents": ["a", 3]}, "documents[1]", "valid string"),
        ({"query": "q", "documents": ["a" * 100_001]}, "documents[0]", "the limit is 100000"),
        ({"documents": ["a"]}, "query", "Field required"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", "greater than or equal to 1"),
        (
            {"query": "q", "documents": ["a"], "instruction_preset": "nope"},
            "instruction_preset",
            "unknown preset 'nope'",
        ),
        ({"query": "q", "documents": ["a"], "fusion": "borda"}, "fusion", "'zscore', 'minmax'"),
        (
            {"query": "q", "documents": ["a"], "fusion": "rrf", "rank_constant": 0},
            "rank_constant",
            "greater than or equal to 1",
        ),
        (
            {"query": "q", "documents": ["a"], "rank_constant": 60},
            "rank_constant",
            "only applies to FUSION_RRF",
        ),
        (
            {"query": "q", "documents": ["a"], "long_documents": "chunks"},
            "long_documents",
            "'truncate' or 'best_passage'",
        ),
        (
            {"query": "q", "documents": ["a"], "passage_overlap": 4},
            "passage_overlap",
            "only applies to LONG_DOCUMENTS_BEST_PASSAGE",
        ),
        (
            {
                "query": "q",
                "documents": ["a"],
                "long_documents": "best_passage",
                "passage_overlap": 4096,
            },
            "passage_overlap",
            "below truncate_length (2048)",
        ),
        (
            {"query": "q", "documents": ["a"], "return_reasoning": "perhaps"},
            "return_reasoning",
            "valid boolean",
        ),
        ({"query": "q", "documents": ["a"], "budget_ms": 0}, "budget_ms", "greater than or"),
        (
            {"query": "q", "documents": ["a"], "budget_ms": 300_001},
            "budget_ms",
            "less than or equal to 300000",
        ),
        (
            {"query": "q", "documents": ["a"], "on_budget": "wait"},
            "on_budget",
            "'cut' or 'fail_open'",
        ),
        (
            {
                "query": "q",
                "documents": ["a"],
                "on_budget": "fail_open",
                "finish_in_background": True,
            },
            "finish_in_background",
            "only applies to on_budget: cut",
        ),
    ],
    ids=[
        "empty-query",
        "too-many-docs",
        "bad-alpha",
        "scores-length",
        "doc-type",
        "doc-size",
        "no-query",
        "top_n",
        "unknown-preset",
        "fusion",
        "rank-constant",
        "rank-constant-without-rrf",
        "long-documents",
        "overlap-without-best-passage",
        "overlap-too-large",
        "return-reasoning",
        "budget-zero",
        "budget-too-large",
        "on-budget",
        "background-without-cut",
    ],
)
async def test_bad_requests_name_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], field: str, words: str
) -> None:
    answer = await http.post("/v1/rerank", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["status"] == 400
    assert error["error"]["type"] == "illegal_argument_exception"
    violations = error["error"]["violations"]
    assert any(v["field"] == field and words in v["description"] for v in violations), error
    assert field in error["error"]["reason"] and words in error["error"]["reason"]


async def test_not_json_is_a_parse_exception(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/rerank", content=b"{not json")
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "parse_exception"


async def test_unknown_path_and_method_are_json_errors(http: httpx.AsyncClient) -> None:
    unknown = await http.get("/v3/rerank")
    wrong_method = await http.get("/v2/rerank")
    long_path = await http.get("/" + "x" * 5000)
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {"type": "http_error", "reason": "GET '/v3/rerank': Not Found"},
        "status": 404,
    }
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["reason"] == "GET '/v2/rerank': Method Not Allowed"
    assert long_path.status_code == 404  # the path is quoted by its first characters only
    assert len(long_path.json()["error"]["reason"]) < 200


async def test_body_over_the_limit_is_413() -> None:
    app = create_app(f"127.0.0.1:{free_port()}", timeout=10, max_body_bytes=1000)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        answer = await http.post("/v1/rerank", json={"query": QUERY, "documents": ["a" * 2000]})
    assert answer.status_code == 413
    assert answer.json()["error"]["reason"].endswith("the limit is 1000 bytes")


async def test_health_serving(http: httpx.AsyncClient) -> None:
    answer = await http.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "SERVING"}


COMPLETION_KEYS = {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}


async def test_every_answer_says_how_it_was_reached(tiny_server: ScoringServer) -> None:
    """``completion`` and ``thinking_tokens`` on each result, ``completions`` at the top (v1 and
    v2), for a call with a budget and one without; the front measures its overhead."""
    app = create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)
    fresh = f"{QUERY} {uuid.uuid4()}"
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        budgeted = await http.post(
            "/v1/rerank",
            json={
                "query": fresh,
                "documents": DOCUMENTS,
                "budget_ms": 100_000,
                "finish_in_background": True,
            },
        )
        again = await http.post("/v2/rerank", json={"query": fresh, "documents": DOCUMENTS})
        tei = await http.post(
            "/rerank", json={"query": fresh, "texts": DOCUMENTS, "budget_ms": 60_000}
        )
    assert budgeted.status_code == again.status_code == tei.status_code == 200, budgeted.text
    for answer in (budgeted.json(), again.json()):
        for result in answer["results"]:
            assert result["completion"] == "full" and isinstance(result["thinking_tokens"], int)
        completions = answer["completions"]
        assert set(completions) == COMPLETION_KEYS
        assert (completions["full"], completions["cut"], completions["unscored"]) == (4, 0, 0)
        assert completions["cached"] == answer["usage"]["cache_hits"]
        assert isinstance(completions["closing_margin_ms"], float)
    assert budgeted.json()["completions"]["cached"] == 0
    assert again.json()["completions"]["cached"] == 4  # the same texts: the score cache
    assert [set(r) for r in tei.json()] == [{"index", "score"}] * 4  # TEI's shape unchanged
    overhead = app[OVERHEAD].as_json()
    assert overhead["calls"] == 3 and overhead["transport_ms"] > 0 and overhead["assembly_ms"] > 0


async def test_fail_open_past_the_budget_is_504(tiny_server: ScoringServer) -> None:
    """``on_budget: fail_open``: all or nothing, as before cut answers: past ``budget_ms`` the
    front answers 504 (the OpenSearch processor then fails open)."""
    fresh = f"{QUERY} {uuid.uuid4()}"  # never scored before: no cache can answer in time
    async with (
        serving(create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        answer = await http.post(
            "/v1/rerank",
            json={"query": fresh, "documents": DOCUMENTS, "budget_ms": 1, "on_budget": "fail_open"},
        )
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["type"] == "timeout"


async def test_dead_scoring_server_is_503() -> None:
    async with (
        serving(create_app(f"127.0.0.1:{free_port()}", timeout=10)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        rerank = await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
        health = await http.get("/health")
    assert rerank.status_code == 503, rerank.text
    assert rerank.json()["error"]["type"] == "connection_error"
    assert rerank.json()["status"] == 503
    assert health.status_code == 503
    assert health.json()["error"]["type"] == "connection_error"


async def test_deadline_is_504(tiny_server: ScoringServer) -> None:
    app = create_app(f"127.0.0.1:{tiny_server.port}", timeout=0.001)
    fresh = f"{QUERY} {uuid.uuid4()}"  # never scored before: no cache can answer in time
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        answer = await http.post("/v1/rerank", json={"query": fresh, "documents": DOCUMENTS})
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["type"] == "timeout"


async def test_erank_rest_command_with_token(tiny_server: ScoringServer) -> None:
    """`erank rest` as a user runs it, its token from ERANK_REST_TOKEN: /health open, the
    rerank routes only with the token, one log line per request, the token never logged."""
    port, token = free_port(), f"tok-{uuid.uuid4().hex}"
    command = [sys.executable, "-m", "erank_cli", "rest", f"--port={port}"]
    command += [f"--reranker=127.0.0.1:{tiny_server.port}", "--timeout=120"]
    environment = os.environ | {"ERANK_REST_TOKEN": token}
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    body = {"query": QUERY, "documents": DOCUMENTS}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        break
                assert process.poll() is None, process.communicate()[0]
                await asyncio.sleep(0.1)
            answer = await http.post(
                "/v1/rerank", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            missing = await http.post("/v1/rerank", json=body)
            wrong = await http.post(
                "/v1/rerank", json=body, headers={"Authorization": f"Bearer {token[:-1]}"}
            )
    finally:
        process.terminate()
        log, _ = process.communicate(timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == len(DOCUMENTS)
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["type"] == "security_exception"
    assert "POST '/v1/rerank' 401" in log and "bearer token required" in log
    assert token not in log and token[:-1] not in log


def _two_requests_on_one_connection(url: str, first: dict[str, Any]) -> list[tuple[int, Any]]:
    """POST ``first`` then a good request on one keep-alive connection (refuses a new one)."""
    parsed = httpx.URL(url)
    connection = HTTPConnection(parsed.host, parsed.port, timeout=120)
    answers = []
    try:
        for body in (first, {"query": QUERY, "documents": DOCUMENTS[:1]}):
            connection.request(
                "POST", "/v1/rerank", json.dumps(body), {"Content-Type": "application/json"}
            )
            sock = connection.sock
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
            assert connection.sock is sock, "the server closed the connection"
    finally:
        connection.close()
    return answers


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"top_n": 2**40}, "top_n", "less than or equal to 4294967295"),
        ({"top_n": -1}, "top_n", "greater than or equal to 1"),
        (
            {"fusion": "rrf", "rank_constant": 2**32},
            "rank_constant",
            "less than or equal to 4294967295",
        ),
        (
            {"long_documents": "best_passage", "passage_overlap": 2**40},
            "passage_overlap",
            "less than or equal to 4294967295",
        ),
    ],
)
async def test_out_of_range_integer_is_400_and_keeps_the_connection(
    rest_url: str, body: dict[str, Any], field: str, words: str
) -> None:
    request = {"query": QUERY, "documents": DOCUMENTS[:1], **body}
    (status, error), (then, answer) = await asyncio.to_thread(
        _two_requests_on_one_connection, rest_url, request
    )
    assert status == 400, error
    assert error["error"]["violations"] == [
        {"field": field, "description": f"Input should be {words}"}
    ]
    assert then == 200 and [r["index"] for r in answer["results"]] == [0]


async def test_overloaded_scoring_server_is_429_with_retry_after(
    tiny_server: ScoringServer,
) -> None:
    """A server admitting one call at a time, busy with one: the front answers 429."""
    settings = engine_settings(tiny_server.settings.model, max_inflight_requests=1)
    async with (
        running_server(settings, tiny_server.backend) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=120) as client,
        serving(create_app(f"127.0.0.1:{server.port}", timeout=120)) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as http,
    ):
        tag = uuid.uuid4().hex
        documents = [pb.Document(id=str(i), text=f"{tag} {i}") for i in range(100)]
        busy = asyncio.ensure_future(
            client.rerank(pb.RerankRequest(query="q", documents=documents))
        )
        backend = tiny_server.backend
        assert backend is not None
        while backend.running_requests() == 0:
            await asyncio.sleep(0.01)
        answer = await http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
        await busy
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["type"] == "overloaded"
    assert "max_inflight_requests" in error["reason"] and "the limit is 1" in error["reason"]
