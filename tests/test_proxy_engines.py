"""The proxy in front of real Elasticsearch and OpenSearch, driven by their official clients.

Every pinned engine version runs (one at a time), indexes a small corpus, and is searched twice
per case: directly and through ``erank proxy`` (with the real scoring server on the real vLLM
CPU engine, tiny random model: its scores mean nothing, so behaviour is asserted, not
relevance). A test whose engine cannot be fetched or started fails; none skips.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import engine_settings
from engines import RunningEngine, engines_fixture
from proxy_clients import (
    CORPUS_SIZE,
    DOCS,
    MISSING_TEXT,
    OFF,
    WINDOW,
    EngineClient,
    index_corpus,
    proxy_config,
)
from proxy_edges import (  # noqa: F401  collected here: on this module's engines, started once
    test_answers_are_compressed_only_for_clients_that_accept_it,
    test_bodiless_search_with_the_clients_media_type,
    test_filter_path_is_applied_after_reranking,
    test_filter_path_is_the_engines_own,
    test_hits_below_the_window_score_below_every_reranked_hit,
    test_stored_fields_keep_the_reranked_field,
)
from proxy_fuzz import test_proxy_adds_no_server_error  # noqa: F401  on this module's engines
from proxy_metrics import test_proxy_metrics_count_outcomes_fail_open_and_latency  # noqa: F401
from proxy_tracing import test_proxied_search_is_one_trace_under_one_request_id  # noqa: F401
from spans import recorded_fixture, spans_fixture  # noqa: F401  fixtures of proxy_tracing

from connector.proxy.app import RunningProxy, running_proxy
from connector.rewrite.breaker import BreakerConfig
from erank.server import ScoringServer, running_server

pytestmark = pytest.mark.engine
engine = engines_fixture(scope="module")
QUERY = {"match": {"text": "quick fox"}}


def ids(response: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def without_took(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "took"}


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


@pytest_asyncio.fixture(scope="module")
async def clients(
    corpus: RunningEngine, proxy: RunningProxy
) -> AsyncIterator[tuple[EngineClient, EngineClient]]:
    """(direct, through the proxy); the proxy one compresses requests and answers."""
    direct = EngineClient(corpus.kind, corpus.version, corpus.url, compress=False)
    proxied = EngineClient(corpus.kind, corpus.version, proxy.url, compress=True)
    yield direct, proxied
    await direct.close()
    await proxied.close()


async def test_reranked_search_keeps_the_engine_shape(
    clients: tuple[EngineClient, EngineClient],
) -> None:
    """Same keys, totals, shards, aggregations and highlights as direct; product check, gzip
    and compatibility headers survive; every hit carries its BM25 and ERank scores."""
    direct, proxied = clients
    body = {
        "query": QUERY,
        "size": 5,
        "aggs": {"tags": {"terms": {"field": "tag"}}},
        "highlight": {"fields": {"text": {}}},
    }
    plain = await direct.search("docs", body)
    reranked, headers = await proxied.search_with_headers("docs", body)
    assert set(reranked) == set(plain) | {"ext"}
    assert reranked["hits"]["total"] == plain["hits"]["total"]
    assert reranked["_shards"] == plain["_shards"]
    assert reranked["aggregations"] == plain["aggregations"]
    window = await direct.search("docs", {**body, "size": WINDOW})
    assert set(ids(reranked)) <= set(ids(window)) and len(ids(reranked)) == 5
    status = reranked["ext"]["erank"]
    assert status["status"] == "reranked" and status["reranked"] == WINDOW
    assert status["first_stage_ms"] > 0 and status["rerank_ms"] > 0
    bm25 = {h["_id"]: (rank + 1, h["_score"]) for rank, h in enumerate(window["hits"]["hits"])}
    for hit in reranked["hits"]["hits"]:
        info = hit["fields"]["_erank"][0]
        assert (info["first_stage_rank"], info["first_stage_score"]) == bm25[hit["_id"]]
        assert info["relevance_score"] == hit["_score"] and "text_missing" not in info
        assert "highlight" in hit and "text" not in hit["fields"]
    assert reranked["hits"]["max_score"] == reranked["hits"]["hits"][0]["_score"]
    assert headers["x-erank-status"] == "reranked" and "rerank;dur=" in headers["server-timing"]
    assert headers.get("content-encoding") == "gzip"
    if direct.kind == "elasticsearch":
        assert headers["x-elastic-product"] == "Elasticsearch"
        assert "compatible-with" in headers["content-type"]
    blocking = await proxied.blocking_search("docs", body)  # urllib3 flavour: same checks
    assert ids(blocking) == ids(reranked) and blocking["ext"]["erank"]["status"] == "reranked"


async def test_pages_tile_one_reranked_order(clients: tuple[EngineClient, EngineClient]) -> None:
    """Pages of 5 concatenate to the single reranked list: no overlap, no skip; the window is a
    permutation of the BM25 window; past it, hits follow in BM25 order."""
    direct, proxied = clients
    total = WINDOW + 8
    whole = await proxied.search("docs", {"query": QUERY, "size": total})
    pages: list[str] = []
    for start in range(0, total, 5):
        page = await proxied.search("docs", {"query": QUERY, "from": start, "size": 5})
        pages += ids(page)
    assert pages == ids(whole)
    bm25 = await direct.search("docs", {"query": QUERY, "size": total})
    assert sorted(ids(whole)[:WINDOW]) == sorted(ids(bm25)[:WINDOW])
    assert ids(whole)[WINDOW:] == ids(bm25)[WINDOW:]  # scores below the window: proxy_edges
    assert len(set(pages)) == len(pages) == min(total, whole["hits"]["total"]["value"])


PASS_THROUGH: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "field_sort": ("docs", {"query": QUERY, "sort": [{"n": "asc"}]}, {}),
    "search_after": (
        "docs",
        {"query": QUERY, "sort": [{"n": "asc"}], "search_after": [3], "size": 4},
        {},
    ),
    "rescore": (
        "docs",
        {
            "query": QUERY,
            "rescore": {"window_size": 5, "query": {"rescore_query": {"match": {"title": "fox"}}}},
        },
        {},
    ),
    "size_zero": (
        "docs",
        {"query": QUERY, "size": 0, "aggs": {"t": {"terms": {"field": "tag"}}}},
        {},
    ),
    "aggs_only": ("docs", {"size": 0, "aggs": {"t": {"terms": {"field": "tag"}}}}, {}),
    "index_off": (OFF, {"query": QUERY, "size": 5}, {}),
    "past_window": ("docs", {"query": QUERY, "from": WINDOW, "size": 5}, {}),
}


@pytest.mark.parametrize("case", list(PASS_THROUGH))
async def test_pass_through_equals_direct(
    clients: tuple[EngineClient, EngineClient], case: str
) -> None:
    direct, proxied = clients
    index, body, params = PASS_THROUGH[case]
    plain = await direct.search(index, body, **params)
    through, headers = await proxied.search_with_headers(index, body, **params)
    assert without_took(through) == without_took(plain)
    assert headers["x-erank-status"] == "skipped"


async def test_scroll_and_pit_pass_through(clients: tuple[EngineClient, EngineClient]) -> None:
    direct, proxied = clients
    body = {"query": QUERY, "size": 4}
    plain = await direct.search("docs", body, scroll="1m")
    through = await proxied.search("docs", body, scroll="1m")
    assert through["hits"] == plain["hits"]
    assert "ext" not in through and through["_scroll_id"]
    pit = await direct.open_pit("docs")
    pit_body = {"query": QUERY, "size": 4, "pit": {"id": pit, "keep_alive": "1m"}}
    assert (await proxied.search(None, pit_body))["hits"] == (await direct.search(None, pit_body))[
        "hits"
    ]


async def test_source_filtering_is_honoured(clients: tuple[EngineClient, EngineClient]) -> None:
    """With ``_source`` off or filtered the proxy reads the text through ``fields`` and strips
    it again: the user sees what they asked for, reranked."""
    direct, proxied = clients
    for source in (False, ["title"]):
        body = {"query": QUERY, "size": 4, "_source": source}
        plain = await direct.search("docs", body)
        reranked = await proxied.search("docs", body)
        for hit in reranked["hits"]["hits"]:
            assert set(hit["fields"]) == {"_erank"}
            assert "text_missing" not in hit["fields"]["_erank"][0]
            if source is False:
                assert "_source" not in hit
            else:
                assert set(hit["_source"]) <= {"title"}
        assert {h.get("_source", {}).keys() == {"title"} for h in plain["hits"]["hits"]} == {
            source is not False
        }


async def test_missing_text_is_scored_empty_and_marked(
    clients: tuple[EngineClient, EngineClient],
) -> None:
    direct, proxied = clients
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": "quick fox", "fields": ["text", "title"]}},
        "size": WINDOW,
    }
    plain = await direct.search("docs", body)
    reranked = await proxied.search("docs", body)
    assert sorted(ids(reranked)) == sorted(ids(plain))
    missing = {h["_id"] for h in reranked["hits"]["hits"] if h["_id"] in MISSING_TEXT}
    assert missing, "corpus should put text-less documents in the window"
    for hit in reranked["hits"]["hits"]:
        assert hit["fields"]["_erank"][0].get("text_missing", False) == (hit["_id"] in missing)
    assert reranked["ext"]["erank"]["text_missing"] == len(missing)


async def test_query_text_from_ext_and_bad_ext_is_400(
    clients: tuple[EngineClient, EngineClient],
) -> None:
    proxied = clients[1]
    explicit = {"query": {"term": {"tag": "even"}}, "ext": {"erank": {"query_text": "fox"}}}
    reranked = await proxied.search("docs", explicit)
    assert reranked["ext"]["erank"]["status"] == "reranked"
    status, error = await proxied.search_error(
        "docs", {"query": QUERY, "ext": {"erank": {"window": 0}}}
    )
    assert status == 400
    assert error["error"]["type"] == "illegal_argument_exception"
    assert "ext.erank.window" in error["error"]["reason"]


async def test_msearch_item_by_item(clients: tuple[EngineClient, EngineClient]) -> None:
    direct, proxied = clients
    items = [
        ({"index": "docs"}, {"query": QUERY, "size": 3}),
        ({"index": "docs"}, {"query": QUERY, "sort": [{"n": "desc"}], "size": 3}),
        ({"index": "docs"}, {"query": QUERY, "ext": {"erank": {"bogus": 1}}}),
        ({"index": OFF}, {"query": QUERY, "size": 3}),
    ]
    lines = [line for pair in items for line in pair]
    through = (await proxied.msearch(lines))["responses"]
    plain = (await direct.msearch([lines[i] for i in (0, 1, 2, 3, 6, 7)]))["responses"]
    assert len(through) == 4
    assert through[0]["ext"]["erank"]["status"] == "reranked" and len(ids(through[0])) == 3
    assert through[0]["hits"]["total"] == plain[0]["hits"]["total"]
    assert without_took(through[1]) == without_took(plain[1])
    assert through[2]["status"] == 400 and "ext.erank" in through[2]["error"]["reason"]
    assert without_took(through[3]) == without_took(plain[2])


@pytest_asyncio.fixture
async def dedicated_server(tiny_server: ScoringServer) -> AsyncIterator[ScoringServer]:
    """A second scoring server on the tiny engine: stopping it leaves the session's alone."""
    assert tiny_server.backend is not None
    settings = engine_settings(Path(tiny_server.settings.model))
    async with running_server(settings, tiny_server.backend) as server:
        yield server


async def test_fail_open_when_scoring_server_stops(
    corpus: RunningEngine,
    clients: tuple[EngineClient, EngineClient],
    dedicated_server: ScoringServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reranked while the server runs; after it stops, the engine's own page, marked, counted,
    and one warning for several failures. A budget the server cannot meet fails open too."""
    direct = clients[0]
    # every search below calls the stopped server (the breaker's own tests: proxy_breaker.py)
    config = proxy_config(log_interval_s=3600, breaker=BreakerConfig(failures=0))
    async with running_proxy(corpus.url, f"127.0.0.1:{dedicated_server.port}", config) as run:
        proxied = EngineClient(corpus.kind, corpus.version, run.url, compress=True)
        try:
            body = {"query": QUERY, "from": 3, "size": 4}
            assert (await proxied.search("docs", body))["ext"]["erank"]["status"] == "reranked"
            # a query never scored before (the server caches scores): 1 ms cannot be met
            fresh = f"quick fox {uuid.uuid4().hex}"
            slow = {**body, "ext": {"erank": {"budget_ms": 1, "query_text": fresh}}}
            timed_out = (await proxied.search("docs", slow))["ext"]["erank"]
            assert timed_out["status"] == "failed", timed_out
            assert timed_out["error"]["type"] == "timeout", timed_out
            await dedicated_server.stop()
            plain = await direct.search("docs", body)
            caplog.set_level(logging.WARNING, logger="erank.proxy")
            for _ in range(3):
                failed, headers = await proxied.search_with_headers("docs", body)
                assert headers["x-erank-status"] == "failed-open"
                assert failed["ext"]["erank"]["error"]["type"] == "connection_error"
                assert failed["hits"] == plain["hits"]
                assert without_took({**failed, "ext": None}) == without_took({**plain, "ext": None})
        finally:
            await proxied.close()
        stats = run.proxy.stats.as_json()
    per_search = 2 if corpus.kind == "opensearch" else 1  # + a raw request for the headers
    assert stats["failed_open"] == {"timeout": 1, "connection_error": 3 * per_search}
    warnings = [r for r in caplog.records if r.name == "erank.proxy"]
    assert len(warnings) <= 1  # the timeout above may have taken this interval's one warning


async def test_other_requests_stream_through(
    corpus: RunningEngine, clients: tuple[EngineClient, EngineClient]
) -> None:
    direct, proxied = clients
    assert await proxied.count("docs") == await direct.count("docs") == CORPUS_SIZE
    assert await proxied.exists("docs") and not await proxied.exists("nope")
    assert await proxied.get("docs", "d01") == await direct.get("docs", "d01")
    assert DOCS["d01"]["text"] == (await proxied.get("docs", "d01"))["_source"]["text"]
    await proxied.search("docs", {"query": QUERY, "size": 2})
    await proxied.search("docs", {"query": QUERY, "sort": [{"n": "asc"}]})
    async with proxied.http.get(proxied.url + "/_erank/stats") as raw:
        stats = await raw.json()
    assert stats["outcomes"]["reranked"] > 0 and stats["skipped"]["sort"] > 0


async def test_bench_proxy_end_to_end(corpus: RunningEngine, tiny_server: ScoringServer) -> None:
    """``erank bench proxy``'s measurement on this engine (few searches: the machinery, in
    seconds): direct vs proxy with reranking off and on, medians and ratios, isolated rates."""
    from erank_cli.bench.proxy import ProxyBench, run
    from erank_cli.bench.report import proxy_table

    bench = ProxyBench(
        engine_url=corpus.url,
        reranker=f"127.0.0.1:{tiny_server.port}",
        documents=50,
        searches=6,
        warmup=2,
        window=2,
        isolated_seconds=0.2,
    )
    result = await run(bench)
    for name in ("rerank_off", "rerank_on"):
        live = result["live"][name]
        assert live["direct"]["median_ms"] > 0 and live["proxy"]["median_ms"] > 0
        assert live["ratio_median"] == live["proxy"]["median_ms"] / live["direct"]["median_ms"]
    assert result["live"]["rerank_on"]["proxy_statuses"] == {"reranked": 6}
    assert "reranked" not in result["live"]["rerank_off"]["proxy_statuses"]
    assert result["isolated"]["rewrite_hits_per_cpu_s"] > 1000
    assert "proxy rewrite" in str(proxy_table(result).columns[0]._cells)
