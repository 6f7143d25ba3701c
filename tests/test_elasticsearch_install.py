"""`erank elasticsearch install`: the `custom` inference endpoint it creates, and the REST front
answering what Elasticsearch sends through it.

Elasticsearch's `custom` service lives in the x-pack inference plugin, which neither the
integ-test-zip nor Maven Central carries (`org.elasticsearch.plugin:x-pack-inference` is not
published). So: the endpoint JSON is checked against the shape Elasticsearch documents and
parses (`PUT _inference/{task_type}/{id}` with `service: custom`, elasticsearch-specification
`inference/put_custom`; `RerankResponseParser`, `CustomTaskSettings`, `CustomRequest`), the
REST front gets the requests Elasticsearch would build from it (its `${...}` substitution of
JSON values, the validation call's `"test query"` / `["how big"]`), and a real Elasticsearch
9.5.3 shows the install's error path (no inference API in that distribution).
"""

from __future__ import annotations

import json
import re
from string import Template
from typing import Any

import httpx
import pytest
from engines import ELASTICSEARCH_VERSIONS, EnginePool
from typer.testing import CliRunner

from erank_cli.app import app
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb
from opensearch_plugin.elasticsearch import (
    ElasticsearchError,
    connect,
    endpoint_body,
    install,
    retriever_example,
)

PREDEFINED = {"input", "input_type", "query", "top_n", "return_documents"}


def test_endpoint_matches_the_documented_custom_service() -> None:
    body = endpoint_body("http://10.0.0.5:8080/", instruction='Judge "relevance".')
    assert set(body) == {"service", "service_settings", "task_settings"}
    assert body["service"] == "custom"
    settings = body["service_settings"]
    assert set(settings) == {"url", "headers", "request", "response"}
    assert settings["url"] == "http://10.0.0.5:8080/v1/rerank"
    assert settings["response"] == {
        "json_parser": {
            "relevance_score": "$.results[*].relevance_score",
            "reranked_index": "$.results[*].index",
        }
    }
    parameters = body["task_settings"]["parameters"]
    assert parameters == {"instruction": 'Judge "relevance".'}
    assert all(isinstance(v, str | int | float | bool) for v in parameters.values())
    # Templates are never quoted (Elasticsearch writes each value as JSON), and each is either
    # predefined or a task_settings parameter: an unknown one fails every call. `${top_n}` is
    # predefined but absent from the validation call, so it must not be used.
    placeholders = set(re.findall(r"\$\{([^}]+)\}", settings["request"]))
    assert placeholders == {"query", "input", "instruction"}
    assert not re.search(r"\"\$\{", settings["request"])
    assert placeholders <= PREDEFINED | set(parameters)


def test_retriever_example_uses_the_endpoint() -> None:
    example = retriever_example("erank", "body", query="q", window=20)
    reranker = example["retriever"]["text_similarity_reranker"]
    assert reranker["inference_id"] == "erank" and reranker["field"] == "body"
    assert reranker["inference_text"] == "q" and reranker["rank_window_size"] == 20
    assert reranker["retriever"] == {"standard": {"query": {"match": {"body": "q"}}}}


def es_request(body: dict[str, Any], query: str, inputs: list[str]) -> str:
    """The HTTP body Elasticsearch's `custom` service sends: the request template with every
    `${name}` replaced by the JSON of its value (`CustomRequest`'s json placeholder replacer)."""
    values = {"query": query, "input": inputs, **body["task_settings"]["parameters"]}
    return Template(body["service_settings"]["request"]).substitute(
        {k: json.dumps(v) for k, v in values.items()}
    )


def parse_like_elasticsearch(answer: dict[str, Any]) -> list[tuple[int, float]]:
    """`RerankResponseParser`: `$.results[*].index` and `$.results[*].relevance_score`, equal
    counts, indices integers, scores numbers."""
    indices = [r["index"] for r in answer["results"]]
    scores = [r["relevance_score"] for r in answer["results"]]
    assert len(indices) == len(scores)
    assert all(isinstance(i, int) for i in indices)
    assert all(isinstance(s, float) for s in scores)
    return list(zip(indices, scores, strict=True))


async def test_rest_front_answers_the_validation_call(rest_url: str) -> None:
    body = endpoint_body(rest_url)
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.post(
            body["service_settings"]["url"],
            content=es_request(body, "test query", ["how big"]),
            headers=body["service_settings"]["headers"],
        )
    assert answer.status_code == 200, answer.text
    assert [index for index, _ in parse_like_elasticsearch(answer.json())] == [0]


async def test_rest_front_answers_a_rerank_the_way_elasticsearch_reads_it(
    rest_url: str, tiny_client: AsyncRerankerClient
) -> None:
    query = 'what is "BM25"?'
    docs = ["BM25 is a ranking function.", "Paris is in France.", 'Quotes: "a\\b"']
    body = endpoint_body(rest_url, instruction="Judge whether the passage defines the term.")
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.post(
            body["service_settings"]["url"],
            content=es_request(body, query, docs),
            headers=body["service_settings"]["headers"],
        )
    assert answer.status_code == 200, answer.text
    ranked = parse_like_elasticsearch(answer.json())
    assert sorted(i for i, _ in ranked) == [0, 1, 2]
    expected = await tiny_client.rerank(
        pb.RerankRequest(
            query=query,
            instruction="Judge whether the passage defines the term.",
            documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(docs)],
        )
    )
    assert ranked == [(r.index, r.rank_score) for r in expected.results]


def test_install_reports_elasticsearch_refusal(engine_pool: EnginePool) -> None:
    """The integ-test-zip has no inference plugin: install must fail with Elasticsearch's own
    answer, not half-succeed. (When a zip with the inference API appears, this test fails:
    replace it with a real `PUT _inference` round trip.)"""
    engine = engine_pool.get("elasticsearch", ELASTICSEARCH_VERSIONS[-1])
    with pytest.raises(ElasticsearchError) as refused:
        install(connect(engine.url), "http://127.0.0.1:9/")
    by_cli = CliRunner().invoke(
        app, ["elasticsearch", "install", f"--elasticsearch={engine.url}", "--endpoint=http://x"]
    )
    refusal = "no handler found for uri [/_inference/rerank/erank] and method [GET]"
    assert str(refused.value) == f"GET /_inference/rerank/erank -> HTTP 400: {refusal}"
    # the command prints the same one line, brackets and all (rich markup would eat them)
    assert by_cli.exit_code == 1, by_cli.output
    assert by_cli.stderr == f"error: {refused.value}\n"
