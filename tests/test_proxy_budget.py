"""The proxy's budget on a real engine: cut answers instead of failing open (issue 19).

The newest OpenSearch from the session's engine pool, the real proxy, real scoring servers on the
vLLM CPU engine. Each reranked search says how its hits were answered (``fields._erank``'s
``completion``, ``ext.erank.completions``, ``X-Erank-Completions``), and ``on_budget`` and
``finish_in_background`` are taken per search and refused by name when wrong.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from engines import OPENSEARCH_VERSIONS, RunningEngine, engines_fixture
from proxy_clients import WINDOW, index_corpus, proxy_config

from connector.proxy.app import RunningProxy, running_proxy
from erank.server import ScoringServer

pytestmark = pytest.mark.engine
engine = engines_fixture([("opensearch", OPENSEARCH_VERSIONS[-1])], scope="module")
QUERY = {"match": {"text": "quick fox"}}
COMPLETION_KEYS = {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}


@pytest.fixture(scope="module")
def corpus(engine: RunningEngine) -> RunningEngine:
    index_corpus(engine)
    return engine


@pytest_asyncio.fixture(scope="module")
async def proxy(corpus: RunningEngine, tiny_server: ScoringServer) -> AsyncIterator[RunningProxy]:
    async with running_proxy(
        corpus.url, f"127.0.0.1:{tiny_server.port}", proxy_config()
    ) as running:
        yield running


async def search(
    url: str, body: dict[str, Any], path: str = "/docs/_search"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of one search through the proxy at ``url``."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, json=body) as answer,
    ):
        return answer.status, await answer.json(), dict(answer.headers)


async def test_a_reranked_search_says_how_each_hit_was_answered(proxy: RunningProxy) -> None:
    status, body, headers = await search(proxy.url, {"query": QUERY, "size": WINDOW})
    assert status == 200 and headers["X-Erank-Status"] == "reranked"
    erank = body["ext"]["erank"]
    completions = erank["completions"]
    assert set(completions) == COMPLETION_KEYS
    assert completions["full"] + completions["cut"] + completions["unscored"] == WINDOW
    counts = ";".join(f"{k}={completions[k]}" for k in ("full", "cut", "unscored", "cached"))
    assert headers["X-Erank-Completions"] == counts
    marks = [hit["fields"]["_erank"][0] for hit in body["hits"]["hits"]]
    assert len(marks) == WINDOW
    assert sum(m["completion"] == "full" for m in marks) == completions["full"]
    assert all(isinstance(m["thinking_tokens"], int) for m in marks)
    overhead = proxy.proxy.stats.as_json()["overhead"]
    assert overhead["calls"] >= 1 and overhead["assembly_ms"] > 0


@pytest.mark.parametrize(
    ("ext", "words"),
    [
        ({"on_budget": "later"}, "[ext.erank.on_budget] Input should be 'cut' or 'fail_open'"),
        (
            {"on_budget": "fail_open", "finish_in_background": True},
            "finish_in_background only applies to on_budget: cut",
        ),
        ({"finish_in_background": "sometimes"}, "[ext.erank.finish_in_background]"),
    ],
    ids=["on_budget", "background-without-cut", "background-not-a-boolean"],
)
async def test_bad_budget_options_are_400s_naming_the_key(
    proxy: RunningProxy, ext: dict[str, Any], words: str
) -> None:
    status, body, _ = await search(proxy.url, {"query": QUERY, "ext": {"erank": ext}})
    assert status == 400, body
    assert body["error"]["type"] == "illegal_argument_exception"
    assert words in body["error"]["reason"]


async def test_per_search_options_and_msearch(proxy: RunningProxy) -> None:
    for ext in ({"on_budget": "fail_open"}, {"on_budget": "cut", "finish_in_background": True}):
        status, body, headers = await search(proxy.url, {"query": QUERY, "ext": {"erank": ext}})
        assert status == 200 and body["ext"]["erank"]["status"] == "reranked", body
        assert "X-Erank-Completions" in headers
    items = [{}, {"query": {"match": {"text": "fox"}}, "size": 3}, {}, {"query": QUERY}]
    lines = "".join(json.dumps(item) + "\n" for item in items)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            proxy.url + "/docs/_msearch",
            data=lines,
            headers={"Content-Type": "application/x-ndjson"},
        ) as answer,
    ):
        assert answer.status == 200
        responses = (await answer.json())["responses"]
        assert answer.headers["X-Erank-Status"] == "reranked"
    for item in responses:  # each item says it in its own ext.erank
        assert set(item["ext"]["erank"]["completions"]) == COMPLETION_KEYS
