"""The proxy's edges on real engines: compression only when asked, bodiless searches with the
client's compatibility headers, ``filter_path`` after reranking, scores below the window, the
reranked field asked for as a stored field.

Collected through ``test_proxy_engines.py`` (which imports these tests), so they run on its
engines and fixtures: every pinned engine version, each started once for both files. On
Elasticsearch 8 the official 8.x client makes the calls (``proxy_clients.Es8Client``).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from engines import RunningEngine, free_port
from proxy_clients import DOCS, WINDOW, EngineClient, proxy_config

from connector.proxy.app import RunningProxy, running_proxy
from connector.rewrite.breaker import BreakerConfig
from connector.rewrite.filterpath import FilterPath

QUERY = {"match": {"text": "quick fox"}}
SORTED = {
    "query": QUERY,
    "sort": [{"n": "asc"}],
    "size": 3,
    "aggs": {"t": {"terms": {"field": "tag"}}},
}
NO_HITS = {"query": {"match": {"text": "zebra"}}}
# Includes, excludes, wildcards, **, escaped and unmatched paths: each checked against the engine.
PATHS = [
    "hits.hits._id", "hits.hits._id,hits.total", "-hits.hits._source", "**._id", "hits.**._id",
    "took,-took", "hits.hits._source.text", "nothing", "-_shards.*", "hits.*", "*.total.value",
    "_shards.*,-_shards.total", "hits.hits._source.*,-hits.hits._source.n", "-hits", "**.value",
    "-**.value", "aggregations.t.buckets.key", "-hits.hits._source.*", "-hits.hits.*",
]  # fmt: skip


def _ids(answer: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in answer["hits"]["hits"]]


def _no_took(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("took", "ext")}


async def _raw(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    """What curl gets: only the headers given (none added), the body as it came."""
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers = {"Content-Type": "application/json", **headers}
    async with http.request(
        method, url, data=data, headers=headers, skip_auto_headers=("Accept-Encoding",)
    ) as response:
        raw = await response.read()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, raw


async def test_answers_are_compressed_only_for_clients_that_accept_it(
    corpus: RunningEngine, proxy: RunningProxy
) -> None:
    """curl sends no Accept-Encoding: pass-through and reranked answers come back plain; with
    ``Accept-Encoding: gzip`` compressed, as the engine does."""
    requests = [
        ("GET", "/_cluster/health", None),
        ("GET", "/docs/_count", None),
        ("POST", "/docs/_search", SORTED),
        ("POST", "/docs/_search", {"query": QUERY, "size": 3}),
    ]
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for method, path, body in requests:
            status, headers, raw = await _raw(http, method, proxy.url + path, {}, body)
            assert status == 200 and "content-encoding" not in headers, (path, headers)
            assert json.loads(raw), path  # plain JSON, readable as it came
            asked = {"Accept-Encoding": "gzip"}
            _, direct, _ = await _raw(http, method, corpus.url + path, asked, body)
            _, through, _ = await _raw(http, method, proxy.url + path, asked, body)
            assert through.get("content-encoding") == direct.get("content-encoding") == "gzip"


async def test_bodiless_search_with_the_clients_media_type(
    corpus: RunningEngine, proxy: RunningProxy, clients: tuple[EngineClient, EngineClient]
) -> None:
    """``GET /docs/_search?q=...`` without a body, with the Accept header the engine's client
    sends (Elasticsearch's ``compatible-with=N``): the engine takes it, so the proxy does,
    and reranks it; the official client's ``search(q=...)`` too."""
    accept = {}
    if corpus.kind == "elasticsearch":
        major = corpus.version.split(".")[0]
        accept = {"Accept": f"application/vnd.elasticsearch+json; compatible-with={major}"}
    path = "/docs/_search?q=text:fox&size=3"
    async with aiohttp.ClientSession() as http:
        status, _, raw = await _raw(http, "GET", corpus.url + path, accept)
        assert status == 200, raw
        status, headers, raw = await _raw(http, "GET", proxy.url + path, accept)
    assert status == 200 and headers["x-erank-status"] == "reranked", raw
    assert len(_ids(json.loads(raw))) == 3
    direct, proxied = clients
    plain = await direct.search("docs", None, q="text:fox", size=WINDOW)
    reranked = await proxied.search("docs", None, q="text:fox", size=4)
    assert reranked["ext"]["erank"]["status"] == "reranked"
    assert set(_ids(reranked)) <= set(_ids(plain)) and len(_ids(reranked)) == 4


async def test_filter_path_is_applied_after_reranking(
    clients: tuple[EngineClient, EngineClient],
) -> None:
    """A search with ``filter_path`` is reranked, then trimmed: the same page, only the paths
    asked for (``_msearch`` alike)."""
    _, proxied = clients
    body = {"query": QUERY, "size": 5}
    whole = await proxied.search("docs", body)
    paths = "hits.hits._id,hits.hits._score,ext.erank.status"
    trimmed = await proxied.search("docs", body, filter_path=paths)
    page = [{"_id": h["_id"], "_score": h["_score"]} for h in whole["hits"]["hits"]]
    assert trimmed == {"hits": {"hits": page}, "ext": {"erank": {"status": "reranked"}}}
    lines = [{"index": "docs"}, {"query": QUERY, "size": 3}, {"index": "docs"}, SORTED]
    plain = (await proxied.msearch(lines))["responses"]
    only = await proxied.msearch(lines, filter_path="responses.hits.hits._id")
    assert only == {"responses": [{"hits": {"hits": [{"_id": i} for i in _ids(r)]}} for r in plain]}
    assert plain[0]["ext"]["erank"]["status"] == "reranked"


async def test_filter_path_is_the_engines_own(clients: tuple[EngineClient, EngineClient]) -> None:
    """The proxy's filtering equals the engine's on the same answer, for every path in
    :data:`PATHS`, with hits and without; a reranked search without hits, filtered by the
    proxy, equals the engine's filtered answer."""
    direct, proxied = clients
    elasticsearch = direct.kind == "elasticsearch"
    for body in (SORTED, NO_HITS):
        whole = await direct.search("docs", body)
        for path in PATHS:
            own = await direct.search("docs", body, filter_path=path)
            ours = FilterPath.parse(path).apply(whole, elasticsearch)
            assert _no_took(ours) == _no_took(own), (path, body)
    for path in ("-hits.hits._source", "hits.total,hits.hits._id", "-_shards"):
        through = await proxied.search("docs", NO_HITS, filter_path=path)
        own = await direct.search("docs", NO_HITS, filter_path=path)
        assert _no_took(through) == _no_took(own), path


async def test_hits_below_the_window_score_below_every_reranked_hit(
    clients: tuple[EngineClient, EngineClient],
) -> None:
    """The Java processor's rule (``min - 1 - k``): a page across the window's edge is in
    ``_score`` order; hits below keep their BM25 order, score and rank in ``_erank``."""
    direct, proxied = clients
    total = WINDOW + 6
    whole = (await proxied.search("docs", {"query": QUERY, "size": total}))["hits"]["hits"]
    bm25 = (await direct.search("docs", {"query": QUERY, "size": total}))["hits"]["hits"]
    lowest = min(h["_score"] for h in whole[:WINDOW])
    for k, (hit, own) in enumerate(zip(whole[WINDOW:], bm25[WINDOW:], strict=True)):
        assert hit["_id"] == own["_id"] and hit["_score"] == lowest - 1 - k
        info = {
            "first_stage_score": own["_score"],
            "first_stage_rank": WINDOW + k + 1,
            "below_window": True,
        }
        assert hit["fields"]["_erank"] == [info]
    edge = await proxied.search("docs", {"query": QUERY, "from": WINDOW - 2, "size": 5})
    assert edge["hits"]["hits"] == whole[WINDOW - 2 : WINDOW + 3]
    scores = [h["_score"] for h in edge["hits"]["hits"]]
    assert scores == sorted(scores, reverse=True) and scores[1] > scores[2]


STORED = "docs-stored"  # `text` and `title` stored: `stored_fields` returns them


async def test_stored_fields_keep_the_reranked_field(
    corpus: RunningEngine, proxy: RunningProxy, clients: tuple[EngineClient, EngineClient]
) -> None:
    """``stored_fields: ["text", "title"]`` (``text`` is the reranked field): reranked, and
    failed open (a scoring server nobody listens on), every hit's ``fields`` are exactly a
    direct search's, plus ``_erank`` when reranked; the proxy's own ask for ``text`` takes
    nothing away."""
    stored = {"type": "text", "store": True}
    mappings = {"properties": {"text": stored, "title": stored, "n": {"type": "integer"}}}
    corpus.request("DELETE", f"/{STORED}", expect_error=True)
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    corpus.request("PUT", f"/{STORED}", {"settings": settings, "mappings": mappings})
    bulk: list[dict[str, Any]] = []
    for doc_id, doc in list(DOCS.items())[:WINDOW]:
        source = {"text": doc["text"], "title": doc["title"], "n": doc["n"]}
        bulk += [{"index": {"_index": STORED, "_id": doc_id}}, source]
    assert corpus.request("POST", "/_bulk?refresh=true", bulk)["errors"] is False
    direct, proxied = clients
    body = {"query": {"match": {"title": "doc"}}, "stored_fields": ["text", "title"], "size": 5}
    plain = {h["_id"]: h for h in (await direct.search(STORED, body))["hits"]["hits"]}
    assert all("text" in h["fields"] and "_source" not in h for h in plain.values())
    reranked = await proxied.search(STORED, body)
    assert reranked["ext"]["erank"]["status"] == "reranked"
    config = proxy_config(breaker=BreakerConfig(failures=0))
    async with running_proxy(corpus.url, f"127.0.0.1:{free_port()}", config) as down:
        failing = EngineClient(corpus.kind, corpus.version, down.url, compress=False)
        try:
            failed = await failing.search(STORED, body)
        finally:
            await failing.close()
    assert failed["ext"]["erank"]["status"] == "failed"
    for answer in (reranked, failed):
        for hit in answer["hits"]["hits"]:
            fields = {k: v for k, v in hit["fields"].items() if k != "_erank"}
            assert fields == plain[hit["_id"]]["fields"], hit
            assert "_source" not in hit
            assert "text_missing" not in hit["fields"].get("_erank", [{}])[0]
