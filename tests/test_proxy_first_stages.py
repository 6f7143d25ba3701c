"""First stages other than BM25 through the proxy's planning: kNN, retrievers, ``rank``
sections and OpenSearch ``hybrid`` queries are reranked whenever a query text is known.

The shared cases of ``tests/cases/rewrite.json`` (read by the Java plugin's JUnit too) are
checked here for what the proxy decides before it fetches: the query text or the skip reason.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from elasticsearch import ApiError
from engines import (
    ELASTICSEARCH_VERSIONS,
    RunningEngine,
    engines_fixture,
)
from hypothesis import given
from hypothesis import strategies as st
from proxy_clients import DOCS, WINDOW, EngineClient, proxy_config

from connector.proxy.app import running_proxy
from connector.rewrite.config import ConfigError, IndexConfig, ProxyConfig
from connector.rewrite.search import SearchPlan, Skip, plan_search, query_texts, retriever_texts
from connector.wrappers import AsyncRerankingElasticsearch
from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

CASES = json.loads((Path(__file__).parent / "cases" / "rewrite.json").read_text())["cases"]
VECTOR = [0.1, 0.2, 0.3]
KNN_QUERY = {"knn": {"vec": {"vector": VECTOR, "k": 5}}}  # OpenSearch's knn query
ES_KNN = {"field": "vec", "query_vector": VECTOR, "k": 5, "num_candidates": 20}


def config(window: int = 8, **options: Any) -> ProxyConfig:
    return ProxyConfig(default=IndexConfig(window=window, **options))


def planned(case: dict[str, Any]) -> bool:
    """Whether the case's expectation is decided by planning (``no_text`` is decided on the
    fetched hits, by :mod:`connector.rewrite.hits`)."""
    return case["expect"].get("skip") != "no_text"


@pytest.mark.parametrize("case", [c for c in CASES if planned(c)], ids=lambda c: c["name"])
def test_shared_rewrite_cases(case: dict[str, Any]) -> None:
    """The proxy agrees with the Java plugin on query text, skip reason, sent window and the
    options it refuses."""
    proxy = config(case.get("window", 8), **case.get("options", {}))
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(ConfigError) as refused:
            plan_search("i", case.get("params", {}), case["body"], proxy)
        assert str(refused.value) == expect["error"]
        return
    plan = plan_search("i", case.get("params", {}), case["body"], proxy)
    if "skip" in expect:
        assert isinstance(plan, Skip) and plan.reason == expect["skip"]
    else:
        assert isinstance(plan, SearchPlan) and plan.query_text == expect["query_text"]
        assert plan.body["from"] == 0 and plan.body["size"] >= expect["sent"]


def test_every_shared_case_but_fetch_time_ones_is_planned() -> None:
    assert [c["name"] for c in CASES if not planned(c)] == ["no hit has the document fields"]


def test_top_level_knn_with_query_text_is_reranked_knn_kept() -> None:
    body = {"knn": ES_KNN, "ext": {"erank": {"query_text": "vector question"}}}
    plan = plan_search("i", {}, body, config(20))
    assert isinstance(plan, SearchPlan) and plan.query_text == "vector question"
    assert plan.body == {"knn": ES_KNN, "from": 0, "size": 20}


def test_top_level_knn_with_a_query_takes_the_query_text() -> None:
    plan = plan_search("i", {}, {"knn": ES_KNN, "query": {"match": {"t": "fox"}}}, config())
    assert isinstance(plan, SearchPlan) and plan.query_text == "fox"


def test_knn_only_is_skipped_untouched() -> None:
    body = {"knn": ES_KNN, "size": 5}
    plan = plan_search("i", {}, body, config())
    assert isinstance(plan, Skip) and plan.reason == "no_query_text" and plan.body == body


def test_knn_filter_is_not_query_text() -> None:
    """An Elasticsearch knn query's filter restricts; its words are not the question."""
    knn = {"knn": {**ES_KNN, "filter": {"match": {"lang": "english words"}}}}
    assert list(query_texts(knn)) == []
    assert list(query_texts({"bool": {"must": [knn, {"match": {"t": "fox"}}]}})) == ["fox"]


def rrf(*retrievers: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"rrf": {"retrievers": list(retrievers), **options}}


STANDARD = {"standard": {"query": {"match": {"text": "quick fox"}}}}
KNN_RETRIEVER = {"knn": ES_KNN}


@pytest.mark.parametrize(
    ("retriever", "texts"),
    [
        (STANDARD, ["quick fox"]),
        (KNN_RETRIEVER, []),
        (rrf(KNN_RETRIEVER, STANDARD), ["quick fox"]),
        (
            {
                "linear": {
                    "retrievers": [
                        {"retriever": STANDARD, "weight": 2},
                        {"retriever": KNN_RETRIEVER},
                    ]
                }
            },
            ["quick fox"],
        ),
        ({"rrf": {"query": "multi field", "fields": ["a", "b"]}}, ["multi field"]),
        ({"text_similarity_reranker": {"retriever": rrf(STANDARD, KNN_RETRIEVER)}}, ["quick fox"]),
        (rrf(KNN_RETRIEVER, {"knn": {**ES_KNN, "field": "other"}}), []),
    ],
)
def test_retriever_texts(retriever: dict[str, Any], texts: list[str]) -> None:
    assert list(retriever_texts(retriever)) == texts


@pytest.mark.parametrize(
    ("page_from", "size", "own", "sent_window"),
    [(0, 10, None, 20), (10, 10, None, 20), (15, 10, None, 25), (0, 5, 50, 50), (0, 5, 30, 30)],
)
def test_rrf_retriever_window_covers_the_forwarded_size(
    page_from: int, size: int, own: int | None, sent_window: int
) -> None:
    """Elasticsearch refuses size > rank_window_size: the proxy widens it to what it forwards,
    the same for every page inside the rank window (so pages tile), and never narrows it."""
    options = {} if own is None else {"rank_window_size": own}
    body: dict[str, Any] = {
        "retriever": rrf(STANDARD, KNN_RETRIEVER, **options),
        "from": page_from,
        "size": size,
    }
    plan = plan_search("i", {}, body, config(20))
    assert isinstance(plan, SearchPlan) and plan.query_text == "quick fox"
    assert (plan.page_from, plan.page_size) == (page_from, size)
    assert plan.body["from"] == 0 and plan.body["size"] == max(20, page_from + size)
    assert plan.body["retriever"]["rrf"]["rank_window_size"] == sent_window
    assert body["retriever"]["rrf"].get("rank_window_size") == own  # the request is not changed


@pytest.mark.parametrize(
    "retriever",
    [
        {"text_similarity_reranker": {"retriever": STANDARD, "field": "text"}},
        rrf(KNN_RETRIEVER, {"text_similarity_reranker": {"retriever": STANDARD}}),
        {"linear": {"retrievers": [{"retriever": {"text_similarity_reranker": {}}}]}},
    ],
)
def test_retriever_that_reranks_itself_is_not_reranked_again(retriever: dict[str, Any]) -> None:
    """Elasticsearch's own reranking retriever (maybe ERank through its inference endpoint)."""
    plan = plan_search("i", {}, {"retriever": retriever}, config())
    assert isinstance(plan, Skip) and plan.reason == "text_similarity_reranker"


def test_rrf_retriever_without_lexical_part_is_skipped() -> None:
    body = {"retriever": rrf(KNN_RETRIEVER, KNN_RETRIEVER)}
    plan = plan_search("i", {}, body, config())
    assert isinstance(plan, Skip) and plan.reason == "no_query_text"
    with_text = {**body, "ext": {"erank": {"query_text": "given"}}}
    assert isinstance(plan := plan_search("i", {}, with_text, config()), SearchPlan)
    assert plan.query_text == "given"


def test_rank_section_sub_searches() -> None:
    """The older rrf form: ``sub_searches`` with a ``rank`` section (window_size widened)."""
    body = {
        "sub_searches": [{"query": {"match": {"t": "fox"}}}, {"query": {"match": {"t": "dog"}}}],
        "knn": ES_KNN,
        "rank": {"rrf": {"window_size": 5}},
    }
    plan = plan_search("i", {}, body, config(12))
    assert isinstance(plan, SearchPlan) and plan.query_text == "fox dog"
    assert plan.body["rank"] == {"rrf": {"window_size": 12}}


def test_hybrid_takes_its_first_lexical_sub_query_only() -> None:
    body = {"query": {"hybrid": {"queries": [
        KNN_QUERY, {"match": {"t": "first"}}, {"match": {"t": "second"}}]}}}  # fmt: skip
    plan = plan_search("i", {}, body, config())
    assert isinstance(plan, SearchPlan) and plan.query_text == "first"
    only_vectors = {"query": {"hybrid": {"queries": [KNN_QUERY, KNN_QUERY]}}}
    assert (skip := plan_search("i", {}, only_vectors, config())) == Skip(
        "no_query_text", only_vectors
    )
    assert isinstance(skip, Skip)


WORDS = st.text(st.characters(categories=["L"]), min_size=1, max_size=8)


@st.composite
def lexical(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    text = draw(WORDS)
    kind = draw(st.sampled_from(["match", "multi_match"]))
    query = {"match": {"t": text}} if kind == "match" else {"multi_match": {"query": text}}
    return query, text


@given(
    st.lists(st.one_of(st.just(None), lexical()), min_size=1, max_size=5),
    st.sampled_from(["hybrid", "bool", "retriever"]),
    st.integers(0, 30),
    st.integers(1, 15),
)
def test_vector_parts_never_give_text_and_lexical_parts_always_do(
    parts: list[tuple[dict[str, Any], str] | None], shape: str, page_from: int, size: int
) -> None:
    """Any mix of vector and lexical parts: the text is the hybrid's first lexical part or
    every distinct lexical part otherwise; with none, no_query_text; the window is the same."""
    lexical_texts = [p[1] for p in parts if p is not None]
    if shape == "retriever":
        items = [KNN_RETRIEVER if p is None else {"standard": {"query": p[0]}} for p in parts]
        body: dict[str, Any] = {"retriever": rrf(*items)}
    else:
        queries = [KNN_QUERY if p is None else p[0] for p in parts]
        key = "queries" if shape == "hybrid" else "should"
        body = {"query": {shape: {key: queries}}}
    body |= {"from": page_from, "size": size}
    plan = plan_search("i", {}, body, config(20))
    if page_from >= 20:
        assert isinstance(plan, Skip) and plan.reason == "past_window"
    elif not lexical_texts:
        assert isinstance(plan, Skip) and plan.reason == "no_query_text"
    else:
        expected = lexical_texts[:1] if shape == "hybrid" else list(dict.fromkeys(lexical_texts))
        assert isinstance(plan, SearchPlan) and plan.query_text == " ".join(expected)
        assert plan.body["size"] == max(20, page_from + size) and plan.body["from"] == 0


# --- Elasticsearch 8 and 9 with a dense_vector index, through the real proxy and scoring server ---

ES = engines_fixture(
    tuple(("elasticsearch", v) for v in ELASTICSEARCH_VERSIONS), scope="module", name="es"
)
# The client wrappers are elasticsearch-py 9, which asks for `compatible-with=9` (8.x refuses
# it); the rrf retriever is unknown to both integ-test-zips (x-pack's rank-rrf is not in them)
ON_NEWEST_ES = pytest.mark.parametrize(
    "es",
    [("elasticsearch", ELASTICSEARCH_VERSIONS[-1])],
    indirect=True,
    ids=[f"elasticsearch-{ELASTICSEARCH_VERSIONS[-1]}"],
)
VECTORS = "vectors"
LEXICAL = {"match": {"text": "quick fox"}}


def vector(i: int) -> list[float]:
    """Distinct small vectors: documents at distinct distances from any query vector."""
    return [math.cos(i / 7), math.sin(i / 7), i / 40]


def es_knn(k: int = 30) -> dict[str, Any]:
    return {"field": "vec", "query_vector": [1.0, 0.0, 0.0], "k": k, "num_candidates": 45}


def ids(response: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


@pytest.fixture(scope="module")
def vectors(es: RunningEngine) -> RunningEngine:
    """``vectors``: the proxy corpus's texts, each with a 3-dimensional ``vec``."""
    mappings = {"properties": {"text": {"type": "text"}, "n": {"type": "integer"},
                               "vec": {"type": "dense_vector", "dims": 3, "index": True,
                                       "similarity": "l2_norm"}}}  # fmt: skip
    es.request(
        "PUT",
        f"/{VECTORS}",
        {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings},
    )
    bulk: list[dict[str, Any]] = []
    for i, (doc_id, doc) in enumerate(sorted(DOCS.items())):
        source = {
            "n": doc["n"],
            "vec": vector(i),
            **({"text": doc["text"]} if "text" in doc else {}),
        }
        bulk += [{"index": {"_index": VECTORS, "_id": doc_id}}, source]
    answer = es.request("POST", "/_bulk?refresh=true", bulk)
    assert answer["errors"] is False, answer
    return es


@pytest_asyncio.fixture(scope="module")
async def es_clients(
    vectors: RunningEngine, tiny_server: ScoringServer
) -> AsyncIterator[tuple[EngineClient, EngineClient]]:
    """(direct, through the proxy with the tiny scoring server)."""
    async with running_proxy(vectors.url, f"127.0.0.1:{tiny_server.port}", proxy_config()) as run:
        direct = EngineClient(vectors.kind, vectors.version, vectors.url, compress=False)
        proxied = EngineClient(vectors.kind, vectors.version, run.url, compress=True)
        try:
            yield direct, proxied
        finally:
            await direct.close()
            await proxied.close()


def assert_reranked_window(reranked: dict[str, Any], first: dict[str, Any], size: int) -> None:
    """``reranked`` is a page of the first stage's top WINDOW hits, each carrying its
    first-stage rank and the engine's own final ``_score`` as its first-stage score."""
    status = reranked["ext"]["erank"]
    assert status["status"] == "reranked", status
    assert status["reranked"] == min(WINDOW, len(first["hits"]["hits"]))
    stage = {h["_id"]: (r + 1, h["_score"]) for r, h in enumerate(first["hits"]["hits"][:WINDOW])}
    assert set(ids(reranked)) <= set(stage) and len(ids(reranked)) == size
    for hit in reranked["hits"]["hits"]:
        info = hit["fields"]["_erank"][0]
        assert (info["first_stage_rank"], info["first_stage_score"]) == stage[hit["_id"]]


@pytest.mark.engine
async def test_es_top_level_knn_with_query_text_is_reranked(
    es_clients: tuple[EngineClient, EngineClient],
) -> None:
    direct, proxied = es_clients
    body = {"knn": es_knn(), "size": 5}
    first = await direct.search(VECTORS, {**body, "size": WINDOW})
    asked = {**body, "ext": {"erank": {"query_text": "quick fox"}}}
    assert_reranked_window(await proxied.search(VECTORS, asked), first, 5)


@pytest.mark.engine
async def test_es_knn_only_is_skipped_as_the_engine_answers(
    es_clients: tuple[EngineClient, EngineClient],
) -> None:
    direct, proxied = es_clients
    for body in ({"knn": es_knn(), "size": 5}, {"retriever": {"knn": es_knn()}, "size": 5}):
        plain = await direct.search(VECTORS, body)
        through, headers = await proxied.search_with_headers(VECTORS, body)
        assert through["hits"] == plain["hits"]
        assert headers["x-erank-status"] == "skipped"
        assert headers["x-erank-reason"] == "no_query_text"


@pytest.mark.engine
async def test_es_retrievers_are_reranked(es_clients: tuple[EngineClient, EngineClient]) -> None:
    """A lexical standard retriever, and a knn retriever given ext.erank.query_text."""
    direct, proxied = es_clients
    standard = {"retriever": {"standard": {"query": LEXICAL}}, "size": 4}
    knn = {"retriever": {"knn": es_knn()}, "size": 4}
    for body, ext in ((standard, {}), (knn, {"ext": {"erank": {"query_text": "quick fox"}}})):
        first = await direct.search(VECTORS, {**body, "size": WINDOW})
        assert_reranked_window(await proxied.search(VECTORS, {**body, **ext}), first, 4)


@pytest.mark.engine
async def test_es_knn_pages_tile(es_clients: tuple[EngineClient, EngineClient]) -> None:
    """Consecutive pages of a kNN search share no hit and together are one reranked order:
    the first stage's window, permuted, then its own hits past the window."""
    direct, proxied = es_clients
    body = {"knn": es_knn(), "ext": {"erank": {"query_text": "quick fox"}}}
    total = WINDOW + 8
    whole = await proxied.search(VECTORS, {**body, "size": total})
    pages: list[str] = []
    for start in range(0, total, 5):
        page = await proxied.search(VECTORS, {**body, "from": start, "size": 5})
        assert not set(ids(page)) & set(pages)
        pages += ids(page)
    assert pages == ids(whole)
    first = await direct.search(VECTORS, {"knn": es_knn(), "size": total})
    assert sorted(pages[:WINDOW]) == sorted(ids(first)[:WINDOW])
    assert pages[WINDOW:] == ids(first)[WINDOW:]


@ON_NEWEST_ES
@pytest.mark.engine
async def test_es_wrapper_reranks_knn_and_retrievers_like_the_proxy(
    vectors: RunningEngine,
    es_clients: tuple[EngineClient, EngineClient],
    tiny_server: ScoringServer,
) -> None:
    """The client wrapper plans first stages as the proxy does: the client's own ``knn=`` and
    ``retriever=`` arguments with ``rerank=`` give the proxy's page; kNN alone is the engine's."""
    direct, proxied = es_clients
    client = AsyncRerankingElasticsearch(
        vectors.url, reranker=f"127.0.0.1:{tiny_server.port}", rerank_config=proxy_config()
    )
    try:
        text = {"query_text": "quick fox"}
        wrapped = (await client.search(index=VECTORS, knn=es_knn(), size=5, rerank=text)).body
        through = await proxied.search(
            VECTORS, {"knn": es_knn(), "size": 5, "ext": {"erank": text}}
        )
        assert ids(wrapped) == ids(through) and wrapped["ext"]["erank"]["status"] == "reranked"
        retriever = {"standard": {"query": LEXICAL}}
        wrapped = (await client.search(index=VECTORS, retriever=retriever, size=4)).body
        through = await proxied.search(VECTORS, {"retriever": retriever, "size": 4})
        assert ids(wrapped) == ids(through) and wrapped["ext"]["erank"]["status"] == "reranked"
        alone = (await client.search(index=VECTORS, knn=es_knn(), size=5)).body
        assert alone["hits"] == (await direct.search(VECTORS, {"knn": es_knn(), "size": 5}))["hits"]
    finally:
        await client.close()


@ON_NEWEST_ES
@pytest.mark.engine
async def test_es_wrapper_and_proxy_give_the_models_reasons_when_asked(
    vectors: RunningEngine, branch_server: ScoringServer
) -> None:
    """``ext.erank.explain`` on a kNN search, through the client wrapper (``rerank=``) and the
    proxy: every reranked hit carries the reasoning the gRPC server returns for its text (the
    branching scripted model writes ``<think>ok</think>`` before its answer); not asked, none."""
    reranker = f"127.0.0.1:{branch_server.port}"
    asked = {"query_text": "quick fox", "explain": True}
    client = AsyncRerankingElasticsearch(
        vectors.url, reranker=reranker, rerank_config=proxy_config()
    )
    async with (
        running_proxy(vectors.url, reranker, proxy_config()) as run,
        AsyncRerankerClient(reranker, timeout=120) as grpc_client,
    ):
        proxied = EngineClient(vectors.kind, vectors.version, run.url, compress=True)
        try:
            wrapped = (await client.search(index=VECTORS, knn=es_knn(), size=5, rerank=asked)).body
            through = await proxied.search(
                VECTORS, {"knn": es_knn(), "size": 5, "ext": {"erank": asked}}
            )
            plain = await proxied.search(
                VECTORS, {"knn": es_knn(), "size": 5, "ext": {"erank": {"query_text": "quick fox"}}}
            )
        finally:
            await client.close()
            await proxied.close()
        documents = [pb.Document(id=i, text=DOCS[i]["text"]) for i in ids(wrapped)]
        expected = await grpc_client.rerank(
            pb.RerankRequest(query="quick fox", documents=documents, return_reasoning=True)
        )
    reasons = {r.id: r.reasoning for r in expected.results}
    assert set(reasons.values()) == {"<think>ok</think>"}
    for answer in (wrapped, through):
        assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
        assert len(answer["hits"]["hits"]) == 5
        for hit in answer["hits"]["hits"]:
            assert hit["fields"]["_erank"][0]["reasoning"] == reasons[hit["_id"]]
    assert plain["ext"]["erank"]["status"] == "reranked"
    assert all("reasoning" not in h["fields"]["_erank"][0] for h in plain["hits"]["hits"])


@ON_NEWEST_ES
@pytest.mark.engine
async def test_es_rrf_retriever_answers_as_the_engine_does(
    es_clients: tuple[EngineClient, EngineClient],
) -> None:
    """The integ-test-zip has no rank-rrf module (x-pack), so ``rrf`` is an unknown retriever
    there: through the proxy (planned, rank_window_size widened) the user gets the engine's own
    error, not a proxy one. Where rrf exists, the same search must come back reranked."""
    direct, proxied = es_clients
    body = {"retriever": rrf({"standard": {"query": LEXICAL}}, {"knn": es_knn()}), "size": 4}
    try:
        first = await direct.search(VECTORS, {**body, "size": WINDOW})
    except ApiError:
        status, error = await direct.search_error(VECTORS, body)
        through_status, through_error = await proxied.search_error(VECTORS, body)
        assert (through_status, through_error["error"]["type"]) == (status, error["error"]["type"])
        return
    assert_reranked_window(await proxied.search(VECTORS, body), first, 4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.engine
async def test_es_knn_fails_open_when_the_scoring_server_is_down(vectors: RunningEngine) -> None:
    """No scoring server listening: the engine's own page, marked failed-open."""
    body = {"knn": es_knn(), "from": 2, "size": 5, "ext": {"erank": {"query_text": "quick fox"}}}
    async with running_proxy(vectors.url, f"127.0.0.1:{free_port()}", proxy_config()) as run:
        direct = EngineClient(vectors.kind, vectors.version, vectors.url, compress=False)
        proxied = EngineClient(vectors.kind, vectors.version, run.url, compress=True)
        try:
            plain = await direct.search(VECTORS, {k: v for k, v in body.items() if k != "ext"})
            failed, headers = await proxied.search_with_headers(VECTORS, body)
        finally:
            await direct.close()
            await proxied.close()
    assert headers["x-erank-status"] == "failed-open"
    assert failed["ext"]["erank"]["status"] == "failed"
    assert failed["hits"] == plain["hits"]


# --- OpenSearch 2.19.6 with k-NN and neural-search: the hybrid query through the proxy ---

HYBRID_PIPELINE = "hybrid_norm"


@pytest.fixture(scope="module")
def os_vectors(vector_opensearch: RunningEngine) -> Iterator[RunningEngine]:
    """The session's OpenSearch with k-NN and neural-search (tests/conftest.py; our plugin is
    there too), ``vectors`` indexed like Elasticsearch's, a normalization pipeline."""
    engine = vector_opensearch
    engine.request("DELETE", f"/{VECTORS}", expect_error=True)  # a shared engine
    mappings = {
        "properties": {
            "text": {"type": "text"},
            "n": {"type": "integer"},
            "vec": {
                "type": "knn_vector",
                "dimension": 3,
                "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"},
            },
        }
    }
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "index.knn": True}
    engine.request("PUT", f"/{VECTORS}", {"settings": settings, "mappings": mappings})
    bulk: list[dict[str, Any]] = []
    for i, (doc_id, doc) in enumerate(sorted(DOCS.items())):
        source = {"n": doc["n"], "vec": vector(i)} | (
            {"text": doc["text"]} if "text" in doc else {}
        )
        bulk += [{"index": {"_index": VECTORS, "_id": doc_id}}, source]
    answer = engine.request("POST", "/_bulk?refresh=true", bulk)
    assert answer["errors"] is False, answer
    normalization = {
        "normalization-processor": {
            "normalization": {"technique": "min_max"},
            "combination": {
                "technique": "arithmetic_mean",
                "parameters": {"weights": [0.5, 0.5]},
            },
        }
    }
    engine.request(
        "PUT",
        f"/_search/pipeline/{HYBRID_PIPELINE}",
        {"phase_results_processors": [normalization]},
    )
    yield engine


def hybrid(*queries: dict[str, Any], size: int = 5) -> dict[str, Any]:
    return {"query": {"hybrid": {"queries": list(queries)}}, "size": size}


@pytest.mark.engine
async def test_opensearch_hybrid_is_reranked_on_its_lexical_sub_query(
    os_vectors: RunningEngine, tiny_server: ScoringServer
) -> None:
    """The hybrid's normalized ``_score`` is the first stage; a vector-only hybrid is skipped."""
    knn = {"knn": {"vec": {"vector": [1.0, 0.0, 0.0], "k": 20}}}
    params = {"search_pipeline": HYBRID_PIPELINE}
    async with running_proxy(
        os_vectors.url, f"127.0.0.1:{tiny_server.port}", proxy_config()
    ) as run:
        direct = EngineClient(os_vectors.kind, os_vectors.version, os_vectors.url, compress=False)
        proxied = EngineClient(os_vectors.kind, os_vectors.version, run.url, compress=True)
        try:
            body = hybrid(LEXICAL, knn)
            first = await direct.search(VECTORS, {**body, "size": WINDOW}, params=params)
            assert_reranked_window(await proxied.search(VECTORS, body, params=params), first, 5)
            only_vectors = hybrid(knn, knn)
            plain = await direct.search(VECTORS, only_vectors, params=params)
            through = await proxied.search(VECTORS, only_vectors, params=params)
            assert through["hits"] == plain["hits"] and "ext" not in through
        finally:
            await direct.close()
            await proxied.close()
