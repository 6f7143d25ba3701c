"""The native route end to end: real OpenSearch 2.19 and 3.x with our plugin zip, the REST front,
the real scoring server on the vLLM CPU engine, and `erank opensearch install --mode native`.

Per OpenSearch version (one engine at a time): the plugin zip is built with Maven for that exact
version (cached by version and source digest under the engines cache), installed with
`opensearch-plugin install --batch`, and the node started. Searches go through opensearch-py.
The tiny model's scores mean nothing; the tests check that hits are ordered by the scores the
scoring server computed for the same texts and BM25 scores, that both scores stay visible, that
`_score` falls across the window's edge, that pages tile the reranked window, that `took` and
`_explanation` tell the reranked truth, that a stopped REST front fails open while searches with
nothing to score never reach it, and that install/uninstall are idempotent and leave the cluster
as it was.

First stages other than BM25 run where Maven Central serves the k-NN and neural-search plugins
for the engine's version (2.19.6; their 3.8.0.0 releases are not there, so 3.8.0 runs without
them): a `knn` search reranked on `ext.erank.query_text`, a `hybrid` search reranked after
neural-search's normalization processor (its normalized `_score`s are the first-stage scores),
and a kNN-only search without a query text skipped, never guessed. k-NN extends `lang-painless`,
which 2.19.6's integ-test-zip lacks: the distribution with it is the one
`test_opensearch_ml_commons` assembles from Maven Central.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from engines import (
    OPENSEARCH_VERSIONS,
    RunningEngine,
    cache_dir,
    fetch_plugin,
    find_java,
    start_engine,
)
from opensearchpy import NotFoundError, OpenSearch, RequestError
from test_opensearch_ml_commons import cache_with_painless
from typer.testing import CliRunner

from connector.client import AsyncRerankerClient
from connector.rest import create_app, serving
from erank.cli import app
from erank.server import ScoringServer
from erank.v1 import reranker_pb2 as pb
from opensearch_plugin.install import connect, install, uninstall
from opensearch_plugin.options import InstallOptions

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "opensearch_plugin" / "java"
INDEX = "docs"
QUERY = "how do rerankers work"
WINDOW = 8
ALPHA = 0.3
FIELDS = ("title", "body")
CORPUS = {
    f"d{i:02d}": {"title": title, "body": body}
    for i, (title, body) in enumerate(
        [
            ("Rerankers", "Rerankers reorder the first-stage hits with a stronger model."),
            ("Cross-encoders", "Cross-encoder rerankers read query and document together."),
            ("LLM rerankers", "LLM rerankers work by judging each passage against the query."),
            ("BM25", "BM25 ranks documents; rerankers work on its top hits."),
            ("Search pipelines", "Search pipelines run processors such as rerankers."),
            ("How search works", "Indexing, retrieval, rerankers: how a search engine works."),
            ("Fusion", "Hybrid scores fuse BM25 with the scores of rerankers."),
            ("Latency", "Rerankers cost latency, so they work on a window of hits."),
            ("Pagination", "Pages of hits from rerankers must not overlap."),
            ("Prompting", "The prompt of LLM rerankers asks how relevant the passage is."),
            ("Evaluation", "nDCG shows whether rerankers work on your data."),
            ("Caching", "Prefix caching makes rerankers fast when queries repeat."),
            ("Windows", "Only the top hits go to rerankers."),
            ("Costs", "Rerankers on a GPU serve many queries per second."),
        ]
    )
}
# Where the `knn` and `hybrid` queries can run: opensearch-knn and neural-search X.Y.Z.0 on
# Maven Central (3.8.0.0 of either is not, checked 2026-11-28 with `mvn dependency:get`).
VECTOR_VERSIONS = ("2.19.6",)
# The k-NN and neural-search plugins of 3.8.0 are not on Maven Central (newest k-NN there: 3.5.0.0),
# so the vector first stages are tested where they can be installed, instead of skipping.
ON_VECTOR_VERSIONS = pytest.mark.parametrize(
    "opensearch", VECTOR_VERSIONS, indirect=True, ids=lambda v: f"opensearch-{v}"
)
VECTOR_PLUGINS = ("opensearch-knn", "neural-search")
VECTORS = "vectors"
QUERY_VECTOR = [1.0, 0.0, 0.0]
T = TypeVar("T")
# the REST front's bearer token, in the nodes' keystore (docs/OPENSEARCH.md)
KEYSTORE_TOKEN = "keystore-token-" + "k" * 16


def plugin_zip(version: str) -> Path:
    """Our plugin built with Maven for OpenSearch ``version``; cached by version and by a
    digest of the plugin's sources, so a re-run (or another test run) reuses it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (PLUGIN_SOURCE / "src").rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(PLUGIN_SOURCE)).encode() + path.read_bytes())
    digest.update((PLUGIN_SOURCE / "pom.xml").read_bytes())
    cached = (
        cache_dir() / "erank-plugin" / f"erank-opensearch-{version}-{digest.hexdigest()[:16]}.zip"
    )
    if cached.is_file():
        return cached
    command = ["mvn", "-B", "-q", "-DskipTests", f"-Dopensearch.version={version}", "package"]
    if int(version.split(".")[0]) >= 3:
        command.insert(1, "-Pos3")
    java = find_java("opensearch", version)
    done = subprocess.run(
        command,
        cwd=PLUGIN_SOURCE,
        env={**os.environ, "JAVA_HOME": str(java)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    built = PLUGIN_SOURCE / "target" / f"opensearch-{version}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(built / f"erank-opensearch-0.1.0-opensearch-{version}.zip", staging)
    os.replace(staging, cached)
    return cached


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call off the event loop, which serves the REST front and the
    scoring server that the engine calls back during the search."""
    return await asyncio.to_thread(call, *args, **kwargs)


@pytest.fixture(scope="module", params=OPENSEARCH_VERSIONS, ids=lambda v: f"opensearch-{v}")
def opensearch(request: pytest.FixtureRequest) -> Iterator[RunningEngine]:
    version: str = request.param
    plugins = [plugin_zip(version)]
    with pytest.MonkeyPatch.context() as patch:
        if version in VECTOR_VERSIONS:
            plugins += [fetch_plugin(name, version) for name in VECTOR_PLUGINS]
            patch.setenv("ERANK_ENGINES_CACHE", str(cache_with_painless(version)))
        engine = start_engine(
            "opensearch", version, plugins=plugins, keystore={"erank.token": KEYSTORE_TOKEN}
        )
    with engine:
        yield engine


@pytest.fixture(scope="module")
def client(opensearch: RunningEngine) -> OpenSearch:
    client = connect(opensearch.url)
    client.indices.create(
        index=INDEX,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {f: {"type": "text", "analyzer": "standard"} for f in FIELDS}
            },
        },
    )
    for doc_id, source in CORPUS.items():
        client.index(index=INDEX, id=doc_id, body=source)
    client.indices.refresh(index=INDEX)
    return client


@pytest_asyncio.fixture(scope="module")
async def pipeline(client: OpenSearch, rest_url: str) -> str:
    options = InstallOptions(
        endpoint=rest_url,
        pipeline="erank",
        fields=FIELDS,
        window=WINDOW,
        alpha=ALPHA,
        timeout_s=120,
    )
    result = await blocking(install, client, options)
    assert result.action == "created"
    return options.pipeline


def search_body(size: int, start: int = 0) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": QUERY, "fields": list(FIELDS)}},
        "from": start,
        "size": size,
    }


async def search(
    client: OpenSearch, body: dict[str, Any], pipeline: str | None, index: str = INDEX
) -> dict[str, Any]:
    params = {"search_pipeline": pipeline} if pipeline else {}
    answer: dict[str, Any] = await blocking(client.search, index=index, body=body, params=params)
    return answer


def erank_of(hit: dict[str, Any]) -> dict[str, Any]:
    values: list[dict[str, Any]] = hit["fields"]["_erank"]
    assert len(values) == 1
    return values[0]


async def test_hits_reordered_by_the_servers_fused_scores(
    client: OpenSearch, pipeline: str, tiny_client: AsyncRerankerClient
) -> None:
    bm25 = (await search(client, search_body(WINDOW), None))["hits"]["hits"]
    answer = await search(client, search_body(10), pipeline)
    assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
    assert answer["ext"]["erank"]["fused"] is True
    assert answer["ext"]["erank"]["reranked"] == WINDOW
    hits = answer["hits"]["hits"]
    assert len(hits) == 10
    reranked, tail = hits[:WINDOW], hits[WINDOW:]
    # the window, ordered by the fused score, which is the new _score; BM25 kept beside it
    scores = [erank_of(h)["relevance_score"] for h in reranked]
    assert scores == sorted(scores, reverse=True)
    assert [h["_score"] for h in reranked] == pytest.approx(scores, rel=1e-6)
    assert answer["hits"]["max_score"] == pytest.approx(scores[0], rel=1e-6)
    bm25_by_id = {h["_id"]: h["_score"] for h in bm25}
    assert {h["_id"] for h in reranked} == set(bm25_by_id)
    for position, hit in enumerate(reranked):
        erank = erank_of(hit)
        assert erank["bm25_score"] == pytest.approx(bm25_by_id[hit["_id"]], rel=1e-6)
        assert erank["relevance_score"] == erank["hybrid_score"]
        assert {"rank_score", "answer", "answer_probability", "status"} <= set(erank), (
            position,
            erank,
        )
    # past the window: BM25 order, scored below every reranked hit, BM25 score kept in _erank
    bm25_tail = (await search(client, search_body(2, WINDOW), None))["hits"]["hits"]
    assert [h["_id"] for h in tail] == [h["_id"] for h in bm25_tail]
    assert [h["_score"] for h in tail] == pytest.approx([scores[-1] - 1, scores[-1] - 2], rel=1e-6)
    for hit, direct in zip(tail, bm25_tail, strict=True):
        assert erank_of(hit)["bm25_score"] == pytest.approx(direct["_score"], rel=1e-6)
        assert erank_of(hit)["below_window"] is True
    # the same texts and BM25 scores straight to the gRPC server give the same scores
    expected = await tiny_client.rerank(
        pb.RerankRequest(
            query=QUERY,
            alpha=ALPHA,
            documents=[
                pb.Document(
                    id=h["_id"],
                    text="\n".join(h["_source"][f] for f in FIELDS),
                    first_stage_score=h["_score"],
                )
                for h in bm25
            ],
        )
    )
    assert [h["_id"] for h in reranked] == [r.id for r in expected.results]
    for hit, result in zip(reranked, expected.results, strict=True):
        assert erank_of(hit)["hybrid_score"] == pytest.approx(result.hybrid_score, rel=1e-9)
        assert erank_of(hit)["rank_score"] == pytest.approx(result.rank_score, rel=1e-9)


async def test_pages_tile_the_reranked_window(client: OpenSearch, pipeline: str) -> None:
    """Pages of 3 over 12 hits: the reranked window (8) then BM25 order, no overlap, no gap,
    although the window ends inside the third page and the fourth is not reranked at all."""
    full = (await search(client, search_body(12), pipeline))["hits"]["hits"]
    pages: list[str] = []
    for start in range(0, 12, 3):
        page = await search(client, search_body(3, start), pipeline)
        expected = ("reranked", None) if start < WINDOW else ("skipped", "past_window")
        assert (page["ext"]["erank"]["status"], page["ext"]["erank"].get("reason")) == expected
        pages += [h["_id"] for h in page["hits"]["hits"]]
    assert pages == [h["_id"] for h in full]
    assert len(set(pages)) == len(pages) == 12


async def test_scores_fall_across_the_window_edge(client: OpenSearch, pipeline: str) -> None:
    """The page that straddles the window's end: reranked hits, then BM25 ones, and `_score`
    never rises down the page although BM25 scores are far above the fused ones."""
    page = (await search(client, search_body(6, WINDOW - 3), pipeline))["hits"]["hits"]
    scores = [h["_score"] for h in page]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores), scores
    below = [h for h in page if erank_of(h).get("below_window")]
    assert len(below) == 3
    bm25 = (await search(client, search_body(3, WINDOW), None))["hits"]["hits"]
    assert [(h["_id"], erank_of(h)["bm25_score"]) for h in below] == [
        (h["_id"], pytest.approx(h["_score"], rel=1e-6)) for h in bm25
    ]


async def test_took_and_explanation_include_the_rerank(client: OpenSearch, pipeline: str) -> None:
    body = {**search_body(WINDOW + 2), "explain": True}
    answer = await search(client, body, pipeline)
    erank = answer["ext"]["erank"]
    assert erank["status"] == "reranked", erank
    assert erank["rerank_ms"] > 0 and "took_ms" not in erank
    assert answer["took"] == pytest.approx(erank["first_stage_ms"] + erank["rerank_ms"], abs=1)
    assert answer["took"] >= erank["rerank_ms"] - 1
    for hit in answer["hits"]["hits"]:
        explanation = hit["_explanation"]
        assert explanation["value"] == pytest.approx(hit["_score"], rel=1e-6), explanation
        first_stage = explanation["details"][0]
        assert first_stage["value"] == pytest.approx(erank_of(hit)["bm25_score"], rel=1e-6)
        if not erank_of(hit).get("below_window"):
            rank = explanation["details"][1]
            assert rank["value"] == pytest.approx(erank_of(hit)["rank_score"], rel=1e-6)


@pytest_asyncio.fixture(scope="module")
async def unreachable_pipeline(
    client: OpenSearch, tiny_server: ScoringServer
) -> AsyncIterator[str]:
    """A pipeline whose REST front has stopped: a search that reaches the scoring call fails
    open with `connection_error`, so a `skipped` answer proves that no call was made."""
    async with serving(create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)) as url:
        pass
    options = InstallOptions(endpoint=url, pipeline="erank_unreachable", fields=FIELDS, window=5)
    await blocking(install, client, options)
    yield options.pipeline
    await blocking(uninstall, client, options.pipeline)


async def test_nothing_to_score_never_calls_the_server(
    client: OpenSearch, unreachable_pipeline: str
) -> None:
    """A page wholly past the window and hits without text are skipped with a reason; the same
    pipeline fails open on a search that does need the server."""
    needs_server = await search(client, search_body(5), unreachable_pipeline)
    assert needs_server["ext"]["erank"]["error"]["type"] == "connection_error"

    past = await search(client, search_body(3, 200), unreachable_pipeline)
    assert past["ext"]["erank"]["status"] == "skipped", past["ext"]
    assert past["ext"]["erank"]["reason"] == "past_window"
    assert past["hits"]["hits"] == []
    beyond = await search(client, search_body(3, 6), unreachable_pipeline)
    direct = (await search(client, search_body(3, 6), None))["hits"]["hits"]
    assert beyond["ext"]["erank"]["reason"] == "past_window"
    assert [(h["_id"], h["_score"]) for h in beyond["hits"]["hits"]] == [
        (h["_id"], h["_score"]) for h in direct
    ]

    no_text = await search(client, {**search_body(5), "_source": False}, unreachable_pipeline)
    assert no_text["ext"]["erank"]["status"] == "skipped", no_text["ext"]
    assert no_text["ext"]["erank"]["reason"] == "no_text"
    assert no_text["ext"]["erank"]["document_fields"] == list(FIELDS)
    top = (await search(client, search_body(5), None))["hits"]["hits"]
    assert [h["_id"] for h in no_text["hits"]["hits"]] == [h["_id"] for h in top]


async def test_fail_open_when_the_rest_front_stops(
    client: OpenSearch, tiny_server: ScoringServer
) -> None:
    bm25 = (await search(client, search_body(5), None))["hits"]["hits"]
    async with serving(create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)) as url:
        options = InstallOptions(endpoint=url, pipeline="erank_stopped", fields=FIELDS, window=5)
        await blocking(install, client, options)
        alive = await search(client, search_body(5), options.pipeline)
    assert alive["ext"]["erank"]["status"] == "reranked"
    stopped = await search(client, search_body(5), options.pipeline)
    assert stopped["ext"]["erank"]["status"] == "failed", stopped["ext"]
    assert stopped["ext"]["erank"]["error"]["type"] == "connection_error"
    assert [(h["_id"], h["_score"]) for h in stopped["hits"]["hits"]] == [
        (h["_id"], h["_score"]) for h in bm25
    ]
    assert all("_erank" not in h.get("fields", {}) for h in stopped["hits"]["hits"])
    await blocking(uninstall, client, options.pipeline)


async def test_install_twice_is_once_and_uninstall_restores(
    opensearch: RunningEngine, client: OpenSearch, rest_url: str
) -> None:
    """Python API and CLI: same options = no change, other options = update, uninstall = the
    pipelines as they were."""
    before = await blocking(client.search_pipeline.get)
    options = InstallOptions(endpoint=rest_url, pipeline="erank_idem", fields=FIELDS, window=4)
    first = await blocking(install, client, options)
    stored = await blocking(client.search_pipeline.get, id=options.pipeline)
    second = await blocking(install, client, options)
    assert (first.action, second.action) == ("created", "unchanged")
    cli = ["opensearch", "install", f"--opensearch={opensearch.url}", f"--endpoint={rest_url}"]
    cli += ["--pipeline=erank_idem", "--field=title", "--field=body", "--window=4"]
    by_cli = await blocking(CliRunner().invoke, app, cli)
    assert by_cli.exit_code == 0, by_cli.output
    assert json.loads(by_cli.output)["action"] == "unchanged"
    assert await blocking(client.search_pipeline.get, id=options.pipeline) == stored
    assert stored[options.pipeline]["response_processors"][0]["erank"]["endpoint"] == rest_url
    changed = await blocking(install, client, dataclasses.replace(options, window=6))
    assert changed.action == "updated"
    shown = await blocking(
        CliRunner().invoke,
        app,
        ["opensearch", "status", f"--opensearch={opensearch.url}", "--pipeline=erank_idem"],
    )
    assert shown.exit_code == 0, shown.output
    state = json.loads(shown.output)
    assert state["installed_by_erank"] and state["processors"] == ["erank_window", "erank"]
    assert state["record"]["fingerprint"] == changed.record.fingerprint
    assert await blocking(uninstall, client, options.pipeline) == [
        f"search pipeline {options.pipeline}"
    ]
    assert await blocking(client.search_pipeline.get) == before
    with pytest.raises(NotFoundError):
        await blocking(client.search_pipeline.get, id=options.pipeline)
    assert await blocking(uninstall, client, options.pipeline) == []


async def test_search_ext_options_are_accepted_and_checked(
    client: OpenSearch, pipeline: str
) -> None:
    """`ext.erank` takes the scoring options per search (the processor forwards them; the REST
    front of today ignores them, so the search is simply reranked) and rejects a bad one with a
    400 that names it, before any scoring."""
    ext = {"fusion": "rrf", "rank_constant": 20, "long_documents": "best_passage"}
    ext |= {"passage_overlap": 16, "explain": True}
    answer = await search(client, {**search_body(5), "ext": {"erank": ext}}, pipeline)
    assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
    with pytest.raises(RequestError) as bad:
        await search(client, {**search_body(5), "ext": {"erank": {"fusion": "borda"}}}, pipeline)
    assert bad.value.status_code == 400
    assert "ext.erank.fusion" in json.dumps(bad.value.info), bad.value.info


def vector(i: int) -> list[float]:
    """Document ``d<i>``'s vector: nearer to QUERY_VECTOR the smaller ``i``."""
    angle = i * 0.2
    return [math.cos(angle), math.sin(angle), 0.05 * i]


@pytest.fixture(scope="module")
def vector_client(opensearch: RunningEngine, client: OpenSearch) -> OpenSearch:
    """The corpus again, with a 3-dimensional `knn_vector` per document (Lucene HNSW)."""
    assert opensearch.version in VECTOR_VERSIONS, "vector tests run on VECTOR_VERSIONS only"
    client.indices.create(
        index=VECTORS,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.knn": True},
            "mappings": {
                "properties": {
                    **{f: {"type": "text", "analyzer": "standard"} for f in FIELDS},
                    "vec": {
                        "type": "knn_vector",
                        "dimension": 3,
                        "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"},
                    },
                }
            },
        },
    )
    for i, (doc_id, source) in enumerate(CORPUS.items()):
        client.index(index=VECTORS, id=doc_id, body={**source, "vec": vector(i)})
    client.indices.refresh(index=VECTORS)
    return client


@pytest_asyncio.fixture(scope="module")
async def hybrid_pipelines(
    vector_client: OpenSearch, pipeline: str
) -> AsyncIterator[tuple[str, str]]:
    """(normalization only, normalization + the erank pipeline's processors): neural-search's
    min-max normalization and arithmetic mean, as its documentation sets them up."""
    normalization = {
        "normalization-processor": {
            "normalization": {"technique": "min_max"},
            "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}},
        }
    }
    erank = (await blocking(vector_client.search_pipeline.get, id=pipeline))[pipeline]
    names = ("hybrid_only", "hybrid_erank")
    bodies = (
        {"phase_results_processors": [normalization]},
        {**erank, "phase_results_processors": [normalization]},
    )
    for name, body in zip(names, bodies, strict=True):
        await blocking(
            vector_client.transport.perform_request, "PUT", f"/_search/pipeline/{name}", body=body
        )
    yield names
    for name in names:
        await blocking(
            vector_client.transport.perform_request, "DELETE", f"/_search/pipeline/{name}"
        )


async def assert_reranked_as_the_server_scores(
    answer: dict[str, Any],
    first_stage: list[dict[str, Any]],
    query: str,
    tiny_client: AsyncRerankerClient,
) -> None:
    """The window holds the first stage's top hits, ordered as the scoring server orders their
    texts with their first-stage `_score`s and ``query``; each keeps its first-stage score."""
    assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
    assert answer["ext"]["erank"]["reranked"] == WINDOW
    window = first_stage[:WINDOW]
    reranked = answer["hits"]["hits"][:WINDOW]
    first_by_id = {h["_id"]: h["_score"] for h in window}
    assert {h["_id"] for h in reranked} == set(first_by_id)
    for hit in reranked:
        assert erank_of(hit)["bm25_score"] == pytest.approx(first_by_id[hit["_id"]], rel=1e-6)
    expected = await tiny_client.rerank(
        pb.RerankRequest(
            query=query,
            alpha=ALPHA,
            documents=[
                pb.Document(
                    id=h["_id"],
                    text="\n".join(h["_source"][f] for f in FIELDS),
                    first_stage_score=h["_score"],
                )
                for h in window
            ],
        )
    )
    assert [h["_id"] for h in reranked] == [r.id for r in expected.results]
    for hit, result in zip(reranked, expected.results, strict=True):
        assert erank_of(hit)["hybrid_score"] == pytest.approx(result.hybrid_score, rel=1e-9)


def knn_body(size: int = 10) -> dict[str, Any]:
    return {
        "query": {"knn": {"vec": {"vector": QUERY_VECTOR, "k": size}}},
        "size": size,
        "_source": list(FIELDS),
    }


@ON_VECTOR_VERSIONS
async def test_knn_search_is_reranked_on_the_given_query_text(
    vector_client: OpenSearch, pipeline: str, tiny_client: AsyncRerankerClient
) -> None:
    knn = (await search(vector_client, knn_body(), None, VECTORS))["hits"]["hits"]
    assert len(knn) == 10
    body = {**knn_body(), "ext": {"erank": {"query_text": QUERY}}}
    answer = await search(vector_client, body, pipeline, VECTORS)
    await assert_reranked_as_the_server_scores(answer, knn, QUERY, tiny_client)


@ON_VECTOR_VERSIONS
async def test_knn_only_without_query_text_is_skipped(
    vector_client: OpenSearch, pipeline: str
) -> None:
    knn = (await search(vector_client, knn_body(), None, VECTORS))["hits"]["hits"]
    answer = await search(vector_client, knn_body(), pipeline, VECTORS)
    assert answer["ext"]["erank"]["status"] == "skipped", answer["ext"]
    assert answer["ext"]["erank"]["reason"] == "no_query_text"
    assert [(h["_id"], h["_score"]) for h in answer["hits"]["hits"]] == [
        (h["_id"], h["_score"]) for h in knn
    ]


@ON_VECTOR_VERSIONS
async def test_hybrid_search_is_reranked_after_normalization(
    vector_client: OpenSearch,
    hybrid_pipelines: tuple[str, str],
    tiny_client: AsyncRerankerClient,
) -> None:
    """The query text is the hybrid query's lexical sub-query; the first-stage scores are the
    normalized, combined `_score`s (those of the same search through normalization alone)."""
    normalized_only, with_erank = hybrid_pipelines
    body = {
        "query": {
            "hybrid": {
                "queries": [
                    {"knn": {"vec": {"vector": QUERY_VECTOR, "k": 10}}},
                    {"match": {"body": QUERY}},
                ]
            }
        },
        "size": 10,
        "_source": list(FIELDS),
    }
    first_stage = (await search(vector_client, body, normalized_only, VECTORS))["hits"]["hits"]
    assert all(0.0 <= h["_score"] <= 1.0 for h in first_stage), first_stage
    answer = await search(vector_client, body, with_erank, VECTORS)
    await assert_reranked_as_the_server_scores(answer, first_stage, QUERY, tiny_client)


@contextlib.asynccontextmanager
async def header_recording_relay(target: str, seen: list[str | None]) -> AsyncIterator[str]:
    """A real HTTP hop in front of the REST front that records each call's ``Authorization``
    header and passes the call on unchanged (what the REST front itself does with the token is
    the REST front's tests' business)."""

    async def relay(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        async with (
            ClientSession() as session,
            session.post(
                target + request.path,
                data=await request.read(),
                headers={"Content-Type": "application/json"},
            ) as answer,
        ):
            body = await answer.read()
        return web.Response(status=answer.status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/rerank", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_the_keystore_token_goes_with_every_call(client: OpenSearch, rest_url: str) -> None:
    """`erank.token` in the node's keystore (not in the pipeline) is sent as a bearer token."""
    seen: list[str | None] = []
    async with header_recording_relay(rest_url, seen) as relay_url:
        options = InstallOptions(
            endpoint=relay_url, pipeline="erank_token", fields=FIELDS, window=5
        )
        await blocking(install, client, options)
        try:
            answer = await search(client, search_body(5), options.pipeline)
            stored = await blocking(client.search_pipeline.get, id=options.pipeline)
        finally:
            await blocking(uninstall, client, options.pipeline)
    assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
    assert seen == [f"Bearer {KEYSTORE_TOKEN}"]
    assert KEYSTORE_TOKEN not in json.dumps(stored)
