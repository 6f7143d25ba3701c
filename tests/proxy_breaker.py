"""The circuit breaker and the HTTP edge's integer limits with real parts on loopback: a real
proxy before a real engine, a real gRPC scoring server that goes away and comes back on the same
port (a new ``ScoringServer`` over the session's tiny-model backend: a real server restart as
far as the proxy can tell), and a wrapped official client.

Collected through ``test_wrappers.py`` (which imports these tests), so they run on its engines,
each started once for both files. Cool-downs are a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from engines import RunningEngine
from engines import free_port as unused_port
from proxy_clients import proxy_config

from connector.proxy.app import RunningProxy, running_proxy
from connector.rewrite.breaker import BreakerConfig
from connector.rewrite.config import ProxyConfig
from connector.wrappers import AsyncRerankingElasticsearch, AsyncRerankingOpenSearch
from erank.server import ScoringServer, running_server

# a small window: the tiny model on a busy CPU scores 3 documents quickly
QUERY = {"query": {"match": {"text": "quick fox"}}, "size": 3, "ext": {"erank": {"window": 3}}}
PAGE = 3
COOLDOWN_MS = 400


def breaker_config(failures: int, cooldown_ms: int = COOLDOWN_MS) -> ProxyConfig:
    return proxy_config(breaker=BreakerConfig(failures=failures, cooldown_ms=cooldown_ms))


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, path: str = "/docs/_search"
) -> tuple[int, str | None, Any]:
    """Status, ``X-Erank-Status`` and parsed body of one search through the proxy."""
    async with http.post(url + path, json=body) as response:
        return response.status, response.headers.get("X-Erank-Status"), await response.json()


async def stats(http: aiohttp.ClientSession, proxy: RunningProxy) -> dict[str, Any]:
    async with http.get(proxy.url + "/_erank/stats") as response:
        found: dict[str, Any] = await response.json()
        return found


async def reranks_again(http: aiohttp.ClientSession, proxy: RunningProxy) -> dict[str, Any]:
    """Search until the proxy reranks again (the breaker's trial after the cool-down, and gRPC's
    reconnect to the port: about 1-3 s on loopback); the reranked answer. Fails after 60 s."""
    began = time.monotonic()
    while time.monotonic() - began < 60:
        _, outcome, body = await post(http, proxy.url, QUERY)
        if outcome == "reranked":
            found: dict[str, Any] = body
            return found
        await asyncio.sleep(COOLDOWN_MS / 1000 / 2)
    raise AssertionError(f"still not reranking: {await stats(http, proxy)}")


async def open_it(http: aiohttp.ClientSession, proxy: RunningProxy, failures: int) -> None:
    """``failures`` searches that call the absent scoring server and fail open: it opens."""
    for _ in range(failures):
        status, outcome, body = await post(http, proxy.url, QUERY)
        assert (status, outcome) == (200, "failed-open")
        assert body["ext"]["erank"]["error"]["type"] == "connection_error"
    assert body["ext"]["erank"]["breaker"]["state"] == "open"


async def test_breaker_opens_on_a_dead_scoring_server_and_the_proxy_reranks_after_restarts(
    corpus: RunningEngine, tiny_server: ScoringServer
) -> None:
    port = unused_port()  # nothing listens there yet
    settings = tiny_server.settings.model_copy(update={"port": port})
    async with (
        running_proxy(corpus.url, f"127.0.0.1:{port}", breaker_config(failures=2)) as proxy,
        aiohttp.ClientSession() as http,
    ):
        await open_it(http, proxy, failures=2)
        for _ in range(3):  # open: the engine's page at once, no scoring call
            status, outcome, body = await post(http, proxy.url, QUERY)
            erank = body["ext"]["erank"]
            assert (status, outcome, erank["status"]) == (200, "failed-open", "failed")
            assert erank["error"]["type"] == "circuit_open" and erank["breaker"]["state"] == "open"
            assert erank["rerank_ms"] < 50 and len(body["hits"]["hits"]) == PAGE
        counted = await stats(http, proxy)
        assert counted["failed_open"] == {"connection_error": 2, "circuit_open": 3}
        assert {k: counted["breaker"][k] for k in ("state", "opens", "short_circuited")} == {
            "state": "open",
            "opens": 1,
            "short_circuited": 3,
        }
        async with running_server(settings, tiny_server.backend):  # back on the same address
            await reranks_again(http, proxy)
        assert (await stats(http, proxy))["breaker"]["state"] == "closed"
        await open_it(http, proxy, failures=2)  # it went away again
        async with running_server(settings, tiny_server.backend):  # restarted
            body = await reranks_again(http, proxy)
        assert "breaker" not in body["ext"]["erank"] and len(body["hits"]["hits"]) == PAGE
        assert (await stats(http, proxy))["breaker"]["state"] == "closed"


def body_of(answer: Any) -> dict[str, Any]:
    """A client's answer as a dict (elasticsearch-py wraps it, opensearch-py does not)."""
    return dict(answer.body) if hasattr(answer, "body") else dict(answer)


async def test_the_wrappers_have_the_same_breaker(corpus: RunningEngine) -> None:
    cls = (
        AsyncRerankingElasticsearch if corpus.kind == "elasticsearch" else AsyncRerankingOpenSearch
    )
    config = breaker_config(failures=2, cooldown_ms=60_000)
    client = cls(corpus.url, reranker=f"127.0.0.1:{unused_port()}", rerank_config=config)
    try:
        answers = [body_of(await client.search(index="docs", body=QUERY)) for _ in range(3)]
    finally:
        await client.close()
    errors = [a["ext"]["erank"]["error"]["type"] for a in answers]
    assert errors == ["connection_error", "connection_error", "circuit_open"]
    assert answers[2]["ext"]["erank"]["breaker"]["state"] == "open"
    breaker = client.reranking.stats.as_json()["breaker"]
    assert (breaker["state"], breaker["opens"], breaker["short_circuited"]) == ("open", 1, 1)


async def test_out_of_range_integers_are_400s_in_the_engines_error_json(
    corpus: RunningEngine, tiny_server: ScoringServer
) -> None:
    rrf = {"fusion": "rrf", "rank_constant": 2**32}
    refused = [
        ("?from=1&size=2147483647", QUERY, "[from] + [size] must be at most 2147483647"),
        ("", {**QUERY, "ext": {"erank": rrf}}, "[ext.erank.rank_constant]"),
        ("", {**QUERY, "ext": {"erank": {"window": 0}}}, "[ext.erank.window]"),
    ]
    reranker = f"127.0.0.1:{tiny_server.port}"
    async with (
        running_proxy(corpus.url, reranker, proxy_config()) as proxy,
        aiohttp.ClientSession() as http,
    ):
        for query, body, words in refused:
            status, _, answer = await post(http, proxy.url, body, "/docs/_search" + query)
            assert status == answer["status"] == 400
            assert answer["error"]["type"] == "illegal_argument_exception"
            assert words in answer["error"]["reason"]
        lines = [{"index": "docs"}, {**QUERY, "ext": {"erank": rrf}}, {"index": "docs"}, QUERY]
        ndjson = "".join(f"{json.dumps(line)}\n" for line in lines)
        async with http.post(
            proxy.url + "/_msearch", data=ndjson, headers={"Content-Type": "application/x-ndjson"}
        ) as response:
            assert response.status == 200
            bad, good = (await response.json())["responses"]
    assert bad["status"] == 400 and "[ext.erank.rank_constant]" in bad["error"]["reason"]
    assert good["ext"]["erank"]["status"] == "reranked" and len(good["hits"]["hits"]) == PAGE
    assert good["ext"]["erank"]["window"] == 3
