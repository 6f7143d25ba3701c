"""The client wrappers on real engines: the official clients, subclassed, rerank like the proxy.

Newest Elasticsearch and OpenSearch only (the proxy suite covers every pinned version; the
wrappers add no HTTP of their own). Blocking clients run in a thread, so the scoring server,
which lives on the test's event loop, keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from engines import ELASTICSEARCH_VERSIONS, OPENSEARCH_VERSIONS, RunningEngine, engines_fixture
from engines import free_port as unused_port
from proxy_breaker import (  # noqa: F401  collected here: on this module's engines, started once
    test_breaker_opens_on_a_dead_scoring_server_and_the_proxy_reranks_after_restarts,
    test_out_of_range_integers_are_400s_in_the_engines_error_json,
    test_the_wrappers_have_the_same_breaker,
)
from proxy_clients import OFF, WINDOW, EngineClient, index_corpus, proxy_config

from connector.proxy.app import running_proxy
from connector.rewrite.config import ConfigError
from connector.wrappers import (
    AsyncRerankingElasticsearch,
    AsyncRerankingOpenSearch,
    RerankingElasticsearch,
    RerankingOpenSearch,
)
from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient

pytestmark = pytest.mark.engine
engine = engines_fixture(
    [("opensearch", OPENSEARCH_VERSIONS[-1]), ("elasticsearch", ELASTICSEARCH_VERSIONS[-1])],
    scope="module",
)
QUERY = {"match": {"text": "quick fox"}}


def body_of(answer: Any) -> dict[str, Any]:
    return dict(answer.body) if hasattr(answer, "body") else dict(answer)


def ids(response: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def blocking(kind: str, url: str, reranker: str, **config: Any) -> Any:
    cls = RerankingElasticsearch if kind == "elasticsearch" else RerankingOpenSearch
    return cls(url, reranker=reranker, rerank_config=proxy_config(**config))


def asyncio_client(kind: str, url: str, reranker: str | AsyncRerankerClient, **config: Any) -> Any:
    cls = AsyncRerankingElasticsearch if kind == "elasticsearch" else AsyncRerankingOpenSearch
    return cls(url, reranker=reranker, rerank_config=proxy_config(**config))


@pytest.fixture(scope="module")
def corpus(engine: RunningEngine) -> Iterator[RunningEngine]:
    index_corpus(engine)
    yield engine


@pytest_asyncio.fixture(scope="module")
async def direct(corpus: RunningEngine) -> AsyncIterator[EngineClient]:
    client = EngineClient(corpus.kind, corpus.version, corpus.url, compress=False)
    yield client
    await client.close()


async def test_blocking_wrapper_reranks_exactly_like_the_proxy(
    corpus: RunningEngine, tiny_server: ScoringServer
) -> None:
    """Same request and response rewriting: the wrapper's page is the proxy's page."""
    reranker = f"127.0.0.1:{tiny_server.port}"
    client = blocking(corpus.kind, corpus.url, reranker)
    body = {"query": QUERY, "from": 2, "size": 5, "_source": ["title"]}
    try:
        wrapped = body_of(await asyncio.to_thread(client.search, index="docs", body=body))
    finally:
        client.close()
    async with running_proxy(corpus.url, reranker, proxy_config()) as proxy:
        through = EngineClient(corpus.kind, corpus.version, proxy.url, compress=False)
        try:
            proxied = await through.search("docs", body)
        finally:
            await through.close()
    assert ids(wrapped) == ids(proxied) and len(ids(wrapped)) == 5
    assert (
        wrapped["hits"]["hits"][0]["fields"]["_erank"]
        == proxied["hits"]["hits"][0]["fields"]["_erank"]
    )
    assert set(wrapped["hits"]["hits"][0]["_source"]) <= {"title"}
    assert wrapped["ext"]["erank"]["status"] == proxied["ext"]["erank"]["status"] == "reranked"


async def test_asyncio_wrapper_takes_rerank_options_and_msearch(
    corpus: RunningEngine, direct: EngineClient, tiny_server: ScoringServer
) -> None:
    client = asyncio_client(corpus.kind, corpus.url, f"127.0.0.1:{tiny_server.port}")
    try:
        answer = body_of(
            await client.search(
                index="docs",
                body={"query": {"term": {"tag": "even"}}, "size": 3},
                rerank={"query_text": "quick fox", "window": 5},
            )
        )
        assert answer["ext"]["erank"]["window"] == 5 and answer["ext"]["erank"]["reranked"] == 5
        bm25 = await direct.search("docs", {"query": {"term": {"tag": "even"}}, "size": 5})
        assert set(ids(answer)) <= set(ids(bm25)) and len(ids(answer)) == 3
        lines: list[dict[str, Any]] = [
            {"index": "docs"},
            {"query": QUERY, "size": 2},
            {"index": OFF},
            {"query": QUERY},
        ]
        responses = body_of(await client.msearch(body=lines))["responses"]
        plain = (await direct.msearch(lines))["responses"]
        assert responses[0]["ext"]["erank"]["status"] == "reranked" and len(ids(responses[0])) == 2
        assert {k: v for k, v in responses[1].items() if k != "took"} == {
            k: v for k, v in plain[1].items() if k != "took"
        }
        with pytest.raises(ConfigError, match=r"ext\.erank\.window"):
            await client.search(index="docs", body={"query": QUERY}, rerank={"window": 0})
    finally:
        await client.close()


async def test_pass_through_and_options(
    corpus: RunningEngine, direct: EngineClient, tiny_server: ScoringServer
) -> None:
    client = asyncio_client(corpus.kind, corpus.url, f"127.0.0.1:{tiny_server.port}")
    sorted_body = {"query": QUERY, "sort": [{"n": "asc"}], "size": 4}
    try:
        through = body_of(await client.search(index="docs", body=sorted_body))
        assert ids(through) == ids(await direct.search("docs", sorted_body))
        assert "ext" not in through
        if corpus.kind == "elasticsearch":  # options() returns a new client: still reranking
            timed = client.options(request_timeout=60)
            answer = await timed.search(index="docs", query=QUERY, size=2)
            assert answer["ext"]["erank"]["status"] == "reranked"
        assert (await client.count(index="docs"))["count"] == await direct.count("docs")
    finally:
        await client.close()


async def test_wrapper_fails_open_without_a_scoring_server(
    corpus: RunningEngine, direct: EngineClient
) -> None:
    """Nothing listens on the reranker's port: the engine's own page, marked."""
    address = f"127.0.0.1:{unused_port()}"
    client = blocking(corpus.kind, corpus.url, address, budget_ms=3000)
    body = {"query": QUERY, "from": 4, "size": 3}
    try:
        answer = body_of(await asyncio.to_thread(client.search, index="docs", body=body))
    finally:
        client.close()
    plain = await direct.search("docs", body)
    assert answer["hits"] == plain["hits"]
    assert answer["ext"]["erank"]["status"] == "failed"
    assert answer["ext"]["erank"]["error"]["type"] in ("connection_error", "timeout")
    assert WINDOW > 4


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
@pytest.mark.parametrize("rerank", ["window=5", 5, ["window", 5]])
async def test_a_rerank_that_is_not_a_mapping_is_a_config_error(kind: str, rerank: Any) -> None:
    """Raised before any request (no engine or scoring server is reached), by both flavours."""
    nowhere = f"127.0.0.1:{unused_port()}"
    client = asyncio_client(kind, f"http://{nowhere}", nowhere)
    try:
        with pytest.raises(ConfigError, match=r"\[rerank\] must be a mapping"):
            await client.search(index="docs", body={"query": QUERY}, rerank=rerank)
    finally:
        await client.close()
    blocking_client = blocking(kind, f"http://{nowhere}", nowhere)
    with blocking_client, pytest.raises(ConfigError, match=r"\[rerank\] must be a mapping"):
        blocking_client.search(index="docs", body={"query": QUERY}, rerank=rerank)


async def test_documented_use_counts_filters_and_closes(
    corpus: RunningEngine, tiny_server: ScoringServer
) -> None:
    """docs/PROXY.md's wrapper examples, both flavours: ``search(body=..., rerank=...)``,
    ``filter_path`` applied after reranking, the counters at ``client.reranking.stats`` for
    either engine, and leaving ``with`` / ``async with`` closes the scoring channel too."""
    reranker = f"127.0.0.1:{tiny_server.port}"
    body = {"query": QUERY, "size": 3}

    def blocking_use() -> tuple[Any, Any, Any, dict[str, Any]]:
        with blocking(corpus.kind, corpus.url, reranker) as client:
            answer = client.search(index="docs", body=body, rerank={"window": 5})
            trimmed = client.search(
                index="docs", body=body, rerank={"window": 5}, filter_path="hits.hits._id"
            )
            channel = client.reranking.sync_client
            return body_of(answer), body_of(trimmed), channel, client.reranking.stats.as_json()

    answer, trimmed, channel, stats = await asyncio.to_thread(blocking_use)
    assert answer["ext"]["erank"]["status"] == "reranked" and answer["ext"]["erank"]["window"] == 5
    assert trimmed == {"hits": {"hits": [{"_id": i} for i in ids(answer)]}}
    assert stats["outcomes"] == {"reranked": 2}
    assert stats["overhead"]["calls"] == 2  # the measured overhead (docs/PROXY.md, the budget)
    assert answer["ext"]["erank"]["completions"]["full"] == 5  # nothing cut: a generous budget
    with pytest.raises(ValueError, match="closed"):
        channel.model_info(timeout=5)

    async with asyncio_client(corpus.kind, corpus.url, reranker) as client:
        answer = body_of(await client.search(index="docs", body=body, rerank={"window": 5}))
        assert answer["ext"]["erank"]["status"] == "reranked"
        assert client.reranking.stats.as_json()["outcomes"] == {"reranked": 1}
        async_channel = client.reranking.async_client
    with pytest.raises(grpc.aio.UsageError, match="closed"):
        await async_channel.model_info(timeout=5)
    async with AsyncRerankerClient(reranker) as own:  # a client the caller gave stays theirs
        async with asyncio_client(corpus.kind, corpus.url, own) as client:
            answer = body_of(await client.search(index="docs", body=body))
            assert answer["ext"]["erank"]["status"] == "reranked"
        assert (await own.model_info(timeout=60)).model
