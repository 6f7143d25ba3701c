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

First stages other than BM25 (`knn`, `hybrid`) are in `test_opensearch_vectors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
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
from conftest import LONG_DOCUMENT, engine_settings
from engines import (
    OPENSEARCH_VERSIONS,
    RunningEngine,
    cache_dir,
    find_java,
    start_engine,
)
from opensearchpy import NotFoundError, OpenSearch, RequestError
from typer.testing import CliRunner

from connector.rest import create_app, serving
from erank.server import ScoringServer, running_server
from erank_cli.app import app
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb
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
T = TypeVar("T")
# the REST front's bearer token, in the nodes' keystore (docs/OPENSEARCH.md)
KEYSTORE_TOKEN = "keystore-token-" + "k" * 16


def plugin_zip(version: str) -> Path:
    """Our plugin built with Maven for OpenSearch ``version``; cached by version and by a
    digest of the plugin's sources, so a re-run (or another test run) reuses it. A zip that
    `mvn package` left in ``target/`` after the last change of a source is taken as it is: CI
    builds both versions with their JUnit tests beside the test run, holding ``.build.lock``,
    which this waits for."""
    sources = sorted(p for p in (PLUGIN_SOURCE / "src").rglob("*") if p.is_file())
    sources.append(PLUGIN_SOURCE / "pom.xml")
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(PLUGIN_SOURCE)).encode() + path.read_bytes())
    cached = (
        cache_dir() / "erank-plugin" / f"erank-opensearch-{version}-{digest.hexdigest()[:16]}.zip"
    )
    if cached.is_file():
        return cached
    with (PLUGIN_SOURCE / ".build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one Maven build at a time in target/
        return _build_plugin(version, sources, cached)


def _build_plugin(version: str, sources: list[Path], cached: Path) -> Path:
    built = (
        PLUGIN_SOURCE
        / "target"
        / f"opensearch-{version}"
        / f"erank-opensearch-0.1.0-opensearch-{version}.zip"
    )
    newest_source = max(path.stat().st_mtime for path in sources)
    if not built.is_file() or built.stat().st_mtime <= newest_source:
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
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(built, staging)
    os.replace(staging, cached)
    return cached


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call off the event loop, which serves the REST front and the
    scoring server that the engine calls back during the search."""
    return await asyncio.to_thread(call, *args, **kwargs)


@pytest.fixture(scope="module", params=OPENSEARCH_VERSIONS, ids=lambda v: f"opensearch-{v}")
def opensearch(request: pytest.FixtureRequest) -> Iterator[RunningEngine]:
    version: str = request.param
    keystore = {"erank.token": KEYSTORE_TOKEN}
    with start_engine(
        "opensearch", version, plugins=[plugin_zip(version)], keystore=keystore
    ) as engine:
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
        timeout_ms=120_000,
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


async def assert_scored_as_grpc(
    reranked: list[dict[str, Any]],
    first_stage: list[dict[str, Any]],
    query: str,
    grpc_client: AsyncRerankerClient,
) -> None:
    """The same texts and first-stage scores sent straight to the gRPC server give the reranked
    hits' order and scores."""
    expected = await grpc_client.rerank(
        pb.RerankRequest(
            query=query,
            alpha=ALPHA,
            documents=[
                pb.Document(
                    id=h["_id"],
                    text="\n".join(h["_source"][f] for f in FIELDS),
                    first_stage_score=h["_score"],
                )
                for h in first_stage
            ],
        )
    )
    assert [h["_id"] for h in reranked] == [r.id for r in expected.results]
    for hit, result in zip(reranked, expected.results, strict=True):
        assert erank_of(hit)["hybrid_score"] == pytest.approx(result.hybrid_score, rel=1e-9)
        assert erank_of(hit)["rank_score"] == pytest.approx(result.rank_score, rel=1e-9)


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
        assert erank["first_stage_score"] == pytest.approx(bm25_by_id[hit["_id"]], rel=1e-6)
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
        assert erank_of(hit)["first_stage_score"] == pytest.approx(direct["_score"], rel=1e-6)
        assert erank_of(hit)["below_window"] is True
    await assert_scored_as_grpc(reranked, bm25, QUERY, tiny_client)


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
    assert [(h["_id"], erank_of(h)["first_stage_score"]) for h in below] == [
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
        assert first_stage["value"] == pytest.approx(erank_of(hit)["first_stage_score"], rel=1e-6)
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


async def test_cluster_refusal_is_printed_with_its_field_and_time_values_work(
    opensearch: RunningEngine, client: OpenSearch, rest_url: str
) -> None:
    """The processor's refusal names the field in brackets; the command prints it as is (rich
    markup used to swallow "[window]"). ``--timeout`` takes the processor's time values."""
    cli = ["opensearch", "install", f"--opensearch={opensearch.url}", f"--endpoint={rest_url}"]
    refused = await blocking(CliRunner().invoke, app, [*cli, "--pipeline=erank_w0", "--window=0"])
    assert refused.exit_code == 1, refused.output
    assert "[window] must be between 1 and 10000, got 0" in refused.stderr
    assert refused.stderr.count("\n") == 1
    installed = await blocking(
        CliRunner().invoke, app, [*cli, "--pipeline=erank_500ms", "--timeout=500ms"]
    )
    assert installed.exit_code == 0, installed.output
    stored = await blocking(client.search_pipeline.get, id="erank_500ms")
    assert stored["erank_500ms"]["response_processors"][0]["erank"]["timeout"] == "500ms"
    assert await blocking(uninstall, client, "erank_500ms") == ["search pipeline erank_500ms"]


async def test_uninstall_refuses_a_pipeline_an_index_searches_with(
    opensearch: RunningEngine, client: OpenSearch, rest_url: str
) -> None:
    """Deleting an index's default search pipeline would make every search there fail 400:
    uninstall refuses, names the index on one line, and leaves the pipeline working."""
    name, index = "erank_default", "docs_default"
    await blocking(install, client, InstallOptions(endpoint=rest_url, pipeline=name))
    settings = {"index.search.default_pipeline": name, "number_of_replicas": 0}
    await blocking(client.indices.create, index=index, body={"settings": settings})
    try:
        cli = ["opensearch", "uninstall", f"--opensearch={opensearch.url}", f"--pipeline={name}"]
        refused = await blocking(CliRunner().invoke, app, cli)
        assert refused.exit_code == 1, refused.output
        assert refused.stderr.startswith(f"error: search pipeline [{name}] is index.search.")
        assert f"of [{index}]:" in refused.stderr and refused.stderr.count("\n") == 1
        assert name in await blocking(client.search_pipeline.get, id=name)
        found = await blocking(client.search, index=index, body={"query": {"match_all": {}}})
        assert found["hits"]["hits"] == []
        body = {"index.search.default_pipeline": None}
        await blocking(client.indices.put_settings, index=index, body=body)
        assert await blocking(uninstall, client, name) == [f"search pipeline {name}"]
    finally:
        await blocking(client.indices.delete, index=index)
        await blocking(uninstall, client, name)


async def test_a_bad_search_option_is_the_searchs_400(client: OpenSearch, pipeline: str) -> None:
    """A bad `ext.erank` value is rejected when the search is parsed, with a 400 that names it,
    before any scoring."""
    with pytest.raises(RequestError) as bad:
        await search(client, {**search_body(5), "ext": {"erank": {"fusion": "borda"}}}, pipeline)
    assert bad.value.status_code == 400
    assert "ext.erank.fusion" in json.dumps(bad.value.info), bad.value.info


@pytest.mark.parametrize(
    ("ext", "reason"),
    [
        ({"fusion": "zscore", "rank_constant": 20}, "rank_constant only applies to fusion: rrf"),
        ({"rank_constant": 20}, "rank_constant only applies to fusion: rrf"),  # pipeline: zscore
        ({"passage_overlap": 8}, "passage_overlap only applies to long_documents: best_passage"),
    ],
    ids=["in-itself", "against-the-pipeline", "overlap-without-best-passage"],
)
async def test_an_option_pair_the_server_would_refuse_is_the_searchs_400(
    client: OpenSearch, pipeline: str, ext: dict[str, Any], reason: str
) -> None:
    """As in the proxy (the shared cases of tests/cases/rewrite.json): `ext.erank` pairing a key
    with a value it does not apply to, in itself (when the search is parsed) or against the
    pipeline's options, is the search's 400 naming it, never a call failed open."""
    with pytest.raises(RequestError) as bad:
        await search(client, {**search_body(5), "ext": {"erank": ext}}, pipeline)
    assert bad.value.status_code == 400, bad.value.info
    assert f"[ext.erank] {reason}" in json.dumps(bad.value.info), bad.value.info


async def pipeline_variant(client: OpenSearch, base: str, name: str, **options: Any) -> str:
    """Pipeline ``name``: a copy of ``base`` whose `erank` processor also has ``options``."""
    body = (await blocking(client.search_pipeline.get, id=base))[base]
    for processor in body["response_processors"]:
        processor.get("erank", {}).update(options)
    await blocking(client.transport.perform_request, "PUT", f"/_search/pipeline/{name}", body=body)
    return name


def zscored(values: list[float]) -> list[float]:
    """Population z-scores, all 0 when the values do not spread (the paper's normalization)."""
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [0.0 if spread == 0 else (v - mean) / spread for v in values]


def min_maxed(values: list[float]) -> list[float]:
    """Elasticsearch's linear-retriever normalization: all 1 when the spread is under 1e-6."""
    low, high = min(values), max(values)
    return [1.0 if high - low < 1e-6 else (v - low) / (high - low) for v in values]


def fused(method: str, first: list[float], rank: list[float], k: int) -> list[float]:
    """The fusion of docs/SCORING.md, computed here from the hits' own two scores: weighted RRF
    on 1-based ranks (equal scores share the best one), or a weighted sum of normalized lists."""
    if method == "rrf":
        ranks = [[1 + sum(o > v for o in s) for v in s] for s in (first, rank)]
        return [ALPHA / (k + a) + (1 - ALPHA) / (k + b) for a, b in zip(*ranks, strict=True)]
    normalize = zscored if method == "zscore" else min_maxed
    pairs = zip(normalize(first), normalize(rank), strict=True)
    return [ALPHA * a + (1 - ALPHA) * b for a, b in pairs]


@pytest.mark.parametrize(
    ("of_pipeline", "ext", "used"),
    [
        (None, {"fusion": "rrf", "rank_constant": 20}, "rrf"),
        ("minmax", {}, "minmax"),
        ("minmax", {"fusion": "zscore"}, "zscore"),
    ],
    ids=["search-rrf", "pipeline-minmax", "search-over-pipeline"],
)
async def test_fusion_of_the_pipeline_or_the_search_is_used(
    client: OpenSearch, pipeline: str, of_pipeline: str | None, ext: dict[str, Any], used: str
) -> None:
    """The processor's `fusion` option, overridden by `ext.erank.fusion`: the method used is
    reported, and every fused score is that method's fusion of the hits' two scores."""
    if of_pipeline is not None:
        pipeline = await pipeline_variant(
            client, pipeline, f"erank_{of_pipeline}", fusion=of_pipeline
        )
    body = {**search_body(WINDOW), "explain": True} | ({"ext": {"erank": ext}} if ext else {})
    answer = await search(client, body, pipeline)
    assert (answer["ext"]["erank"]["status"], answer["ext"]["erank"]["fusion"]) == (
        "reranked",
        used,
    )
    window = [erank_of(h) for h in answer["hits"]["hits"]]
    first, rank = [e["first_stage_score"] for e in window], [e["rank_score"] for e in window]
    expected = fused(used, first, rank, ext.get("rank_constant", 60))
    assert [e["hybrid_score"] for e in window] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert [h["_score"] for h in answer["hits"]["hits"]] == pytest.approx(
        sorted(expected, reverse=True), rel=1e-6, abs=1e-6
    )
    for hit in answer["hits"]["hits"]:
        assert f"({used} fusion of" in hit["_explanation"]["description"], hit["_explanation"]


# --- reasons and best passages: the branching scripted model (conftest SCRIPT_BRANCH) ---

SOFA, CAT = " sofa", " cat"  # one token each in the tiny tokenizer
PASSAGE = 128  # tokens: the scoring server's default truncate_length here
# six passages; the fourth (index 3) is the only one without " sofa", the only one answered
LONG_BODY = SOFA * (3 * PASSAGE) + CAT * PASSAGE + SOFA * (2 * PASSAGE)
CATS = {
    "long": LONG_BODY,
    "s1": "the cat sleeps on the sofa",
    "s2": "where the cat sleeps all day",
    "s3": "a dog sleeps in the garden",
}
CAT_QUERY = "where does the cat sleep"
REASONING = "<think>ok</think>"


@pytest_asyncio.fixture(scope="module")
async def branch(
    branch_server: ScoringServer, branch_checkpoint: Path
) -> AsyncIterator[tuple[str, AsyncRerankerClient]]:
    """(REST front, gRPC client) of a server on the branch engine that cuts documents at
    PASSAGE tokens and generates at most 64: a passage of " sofa"s runs out of tokens (no
    answer), any other text answers 10 after REASONING (as in test_passages)."""
    settings = engine_settings(
        branch_checkpoint, max_new_tokens=64, default_truncate_length=PASSAGE
    )
    async with (
        running_server(settings, backend=branch_server.backend) as server,
        serving(create_app(f"127.0.0.1:{server.port}", timeout=300)) as url,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=300) as grpc_client,
    ):
        yield url, grpc_client


@pytest_asyncio.fixture(scope="module")
async def cats(client: OpenSearch, branch: tuple[str, AsyncRerankerClient]) -> str:
    """Index `cats` (CATS, field `body`) and its pipeline `erank_cats` on the branch server."""
    client.indices.create(index="cats", body={"settings": {"number_of_replicas": 0}})
    for doc_id, body in CATS.items():
        client.index(index="cats", id=doc_id, body={"body": body})
    client.indices.refresh(index="cats")
    options = InstallOptions(
        endpoint=branch[0], pipeline="erank_cats", fields=("body",), timeout_ms=300_000
    )
    await blocking(install, client, options)
    return options.pipeline


def cats_body(**extra: Any) -> dict[str, Any]:
    return {"query": {"match": {"body": CAT_QUERY}}, "size": len(CATS), **extra}


async def grpc_results(
    client: OpenSearch, grpc_client: AsyncRerankerClient, **fields: Any
) -> dict[str, pb.RerankResult]:
    """What the gRPC server answers for the cats' texts and BM25 scores, by id."""
    hits = (await search(client, cats_body(), None, "cats"))["hits"]["hits"]
    documents = [
        pb.Document(id=h["_id"], text=CATS[h["_id"]], first_stage_score=h["_score"]) for h in hits
    ]
    answer = await grpc_client.rerank(
        pb.RerankRequest(query=CAT_QUERY, documents=documents, **fields)
    )
    return {r.id: r for r in answer.results}


@pytest.mark.parametrize("asked", ["explain", "ext", "processor", "not-asked"])
async def test_reasons_on_every_reranked_hit_when_asked(
    client: OpenSearch, cats: str, branch: tuple[str, AsyncRerankerClient], asked: str
) -> None:
    """Asked by the search's `explain`, by `ext.erank.explain` or by the processor's
    `explain_reasoning`: every reranked hit carries what the gRPC server returns as the model's
    reasoning for the same text; with `explain`, also in its `_explanation`. Else nowhere."""
    extra = {"explain": {"explain": True}, "ext": {"ext": {"erank": {"explain": True}}}}
    if asked == "processor":
        cats = await pipeline_variant(client, cats, "erank_cats_reasons", explain_reasoning=True)
    answer = await search(client, cats_body(**extra.get(asked, {})), cats, "cats")
    assert answer["ext"]["erank"]["status"] == "reranked", answer["ext"]
    expected = await grpc_results(client, branch[1], return_reasoning=True)
    hits = answer["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted(CATS)
    for hit in hits:
        info, reasoning = erank_of(hit), expected[hit["_id"]].reasoning
        if hit["_id"] != "long":  # its first 128 tokens are " sofa"s: no answer
            assert reasoning == REASONING
        assert info.get("reasoning") == (None if asked == "not-asked" else reasoning)
        if asked == "explain":
            details = [d["description"] for d in hit["_explanation"]["details"]]
            assert f"ERank reasoning: {reasoning}" in details, details


async def test_the_best_passage_of_a_long_document_is_found_and_reported(
    client: OpenSearch, cats: str, branch: tuple[str, AsyncRerankerClient]
) -> None:
    """Cut at its first passage, the long document gets no answer; by its best passage, it gets
    the answer of its fourth, and `_erank.passage` says which, as the gRPC server does."""
    ext = {"long_documents": "best_passage", "passage_overlap": 0}
    answer = await search(client, cats_body(ext={"erank": ext}), cats, "cats")
    long = next(erank_of(h) for h in answer["hits"]["hits"] if h["_id"] == "long")
    assert (long["answer"], long["status"]) == (10, "ok")
    passage = long["passage"]
    start = 3 * PASSAGE * len(SOFA)  # the text of the fourth passage: exactly the " cat"s
    assert passage == {
        "index": 3,
        "start_char": start,
        "end_char": start + PASSAGE * len(CAT),
        "count": 6,
    }
    expected = (
        await grpc_results(
            client, branch[1], long_documents=pb.LONG_DOCUMENTS_BEST_PASSAGE, passage_overlap=0
        )
    )["long"].passage
    assert passage == {
        "index": expected.index,
        "start_char": expected.start_char,
        "end_char": expected.end_char,
        "count": expected.count,
    }
    cut = await search(client, cats_body(), cats, "cats")
    truncated = next(erank_of(h) for h in cut["hits"]["hits"] if h["_id"] == "long")
    assert truncated["status"] == "no_answer" and "passage" not in truncated


@dataclasses.dataclass(frozen=True)
class Relayed:
    """One call the relay passed on: its ``Authorization`` header and its JSON body."""

    authorization: str | None
    body: dict[str, Any]


def unchanged(answer: dict[str, Any]) -> dict[str, Any]:
    return answer


@contextlib.asynccontextmanager
async def recording_relay(
    target: str,
    seen: list[Relayed],
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] = unchanged,
) -> AsyncIterator[str]:
    """A real HTTP hop in front of the REST front that records each call's ``Authorization``
    header and body and passes the call on unchanged; ``rewrite`` may change a 200 answer's JSON
    on its way back (what the REST front itself does with the token is the REST front's tests'
    business)."""

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(Relayed(request.headers.get("Authorization"), json.loads(body)))
        async with (
            ClientSession() as session,
            session.post(
                target + request.path, data=body, headers={"Content-Type": "application/json"}
            ) as answer,
        ):
            answered = await answer.read()
        if answer.status == 200:
            answered = json.dumps(rewrite(json.loads(answered))).encode()
        return web.Response(status=answer.status, body=answered, content_type="application/json")

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
    seen: list[Relayed] = []
    async with recording_relay(rest_url, seen) as relay_url:
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
    assert [call.authorization for call in seen] == [f"Bearer {KEYSTORE_TOKEN}"]
    assert KEYSTORE_TOKEN not in json.dumps(stored)


# --- budgets (issue 19): what the processor sends, what it reports ---

COUNTS = {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}


async def test_each_call_carries_its_budget_and_each_search_its_completions(
    client: OpenSearch, rest_url: str
) -> None:
    """With `on_budget: cut` (the default) every call sends `budget_ms`: the processor's timeout
    less its own measured overhead, below the timeout and far above 0.
    `ext.erank.on_budget: fail_open` sends no budget (the behaviour before budgets),
    `finish_in_background` goes along when asked. The search reports its completions
    (nothing comes near 120 s here: all full) in `ext.erank.completions` and on each hit."""
    seen: list[Relayed] = []
    budget = {"erank": {"on_budget": "fail_open"}}, {"erank": {"finish_in_background": True}}
    async with recording_relay(rest_url, seen) as relay_url:
        options = InstallOptions(
            endpoint=relay_url, pipeline="erank_budget", fields=FIELDS, window=5, timeout_ms=120_000
        )
        await blocking(install, client, options)
        try:
            answers = [await search(client, search_body(5), options.pipeline)]
            for ext in budget:
                answers.append(
                    await search(client, {**search_body(5), "ext": ext}, options.pipeline)
                )
        finally:
            await blocking(uninstall, client, options.pipeline)
    cut, fail_open, background = (call.body for call in seen)
    assert cut["on_budget"] == "cut" and 60_000 < cut["budget_ms"] < 120_000, cut
    assert "finish_in_background" not in cut
    assert fail_open["on_budget"] == "fail_open" and "budget_ms" not in fail_open, fail_open
    assert background["finish_in_background"] is True and background["on_budget"] == "cut"
    assert 60_000 < background["budget_ms"] < 120_000
    for answer in answers:
        erank = answer["ext"]["erank"]
        assert erank["status"] == "reranked", erank
        completions = erank["completions"]
        assert set(completions) == COUNTS, completions
        assert (completions["full"], completions["cut"], completions["unscored"]) == (5, 0, 0)
        assert 0 <= completions["cached"] <= 5
        assert [erank_of(h)["completion"] for h in answer["hits"]["hits"]] == ["full"] * 5


def cut_at_the_budget(answer: dict[str, Any]) -> dict[str, Any]:
    """What a REST front answers when the budget came first: its best result in full, the second
    cut after 37 thinking tokens, the third without a score (one from the score cache)."""
    for position, result in enumerate(answer["results"]):
        result["completion"] = {1: "cut", 2: "unscored"}.get(position, "full")
        result["thinking_tokens"] = 37 if position == 1 else 0
    full = len(answer["results"]) - 2
    answer["completions"] = {"full": full, "cut": 1, "unscored": 1, "cached": 1}
    answer["completions"] |= {"deadline_ms": 900, "closing_margin_ms": 12.5}
    return answer


async def test_cut_and_unscored_hits_are_reranked_and_marked(
    client: OpenSearch, rest_url: str
) -> None:
    """A reply with cut and unscored documents is a reranked search, not a failed one: the counts
    in `ext.erank.completions`, each hit's `completion` (and `thinking_tokens`) in `_erank`, and a
    cut in its `_explanation`. The REST front's reply is rewritten on the way by a relay, so this
    holds whatever the REST front does with budgets."""
    async with recording_relay(rest_url, [], cut_at_the_budget) as relay_url:
        options = InstallOptions(endpoint=relay_url, pipeline="erank_cut", fields=FIELDS, window=5)
        await blocking(install, client, options)
        try:
            answer = await search(client, {**search_body(5), "explain": True}, options.pipeline)
        finally:
            await blocking(uninstall, client, options.pipeline)
    erank = answer["ext"]["erank"]
    assert erank["status"] == "reranked", erank
    assert erank["completions"] == {
        "full": 3,
        "cut": 1,
        "unscored": 1,
        "cached": 1,
        "deadline_ms": 900,
        "closing_margin_ms": 12.5,
    }
    hits = [erank_of(h) for h in answer["hits"]["hits"]]
    assert [(h["completion"], h["thinking_tokens"]) for h in hits] == [
        ("full", 0),
        ("cut", 37),
        ("unscored", 0),
        ("full", 0),
        ("full", 0),
    ]
    rank = answer["hits"]["hits"][1]["_explanation"]["details"][1]["description"]
    assert rank.endswith("reasoning cut at the call's budget after 37 thinking tokens"), rank


async def test_bad_budget_options_are_refused_by_name(client: OpenSearch, pipeline: str) -> None:
    """`on_budget` and `finish_in_background` are checked like the other options: in the pipeline
    when it is stored, in `ext.erank` when the search is parsed; each refusal a 400 naming it."""
    for options, named in (
        ({"on_budget": "drop"}, "[on_budget] must be one of [cut, fail_open], got [drop]"),
        ({"on_budget": "fail_open", "finish_in_background": True}, "[finish_in_background]"),
    ):
        with pytest.raises(RequestError) as refused:
            await pipeline_variant(client, pipeline, "erank_bad_budget", **options)
        assert refused.value.status_code == 400
        assert named in json.dumps(refused.value.info), refused.value.info
    for ext, named in (
        ({"on_budget": 1}, "ext.erank.on_budget"),
        ({"finish_in_background": "yes"}, "ext.erank.finish_in_background"),
    ):
        with pytest.raises(RequestError) as bad:
            await search(client, {**search_body(5), "ext": {"erank": ext}}, pipeline)
        assert bad.value.status_code == 400
        assert named in json.dumps(bad.value.info), bad.value.info


SOFAS = {"cat": "where the cat sleeps all day", "dog": "a dog sleeps in the garden"}
SOFAS |= {"sofa": LONG_DOCUMENT}  # reasons 200 tokens (conftest SCRIPT_BRANCH), the others a few


async def test_a_slow_document_is_cut_at_the_budget_not_failed_open(
    client: OpenSearch, branch_server: ScoringServer, branch_checkpoint: Path
) -> None:
    """End to end with the real REST front and scoring server (no score cache): a timeout that
    fits the short documents' reasoning but not the long one's answers with the long one cut and
    the others full, where it used to fail open to BM25."""
    settings = engine_settings(branch_checkpoint, score_cache_entries=0)
    async with (
        running_server(settings, backend=branch_server.backend) as server,
        serving(create_app(f"127.0.0.1:{server.port}", timeout=300)) as url,
    ):
        client.indices.create(index="sofas", body={"settings": {"number_of_replicas": 0}})
        for doc_id, body in SOFAS.items():
            client.index(index="sofas", id=doc_id, body={"body": body})
        client.indices.refresh(index="sofas")
        options = InstallOptions(
            endpoint=url, pipeline="erank_sofas", fields=("body",), timeout_ms=120_000
        )
        await blocking(install, client, options)
        body = {"query": {"match_all": {}}, "size": 3, "ext": {"erank": {"query_text": CAT_QUERY}}}
        try:
            full = await search(client, body, options.pipeline, "sofas")
            assert full["ext"]["erank"]["completions"]["full"] == 3, full["ext"]
            assert full["ext"]["erank"]["completions"]["deadline_ms"] > 0, full["ext"]
            # 60 %: short of the long document's reasoning, with room for the hops around it
            half = f"{max(1, round(full['ext']['erank']['rerank_ms'] * 0.6))}ms"
            short = await pipeline_variant(
                client, options.pipeline, "erank_sofas_short", timeout=half
            )
            # Up to three searches: the processor and the REST front learn what their hop costs
            # on this (possibly loaded) machine from each (a fresh estimate starts from a guess,
            # Overhead); one that still comes late fails open, as it must. Seen this session:
            # about one run in three failed open on its first two searches (not understood yet).
            for _ in range(3):
                cut = await search(client, body, short, "sofas")
                if cut["ext"]["erank"]["status"] == "reranked":
                    break
        finally:
            await blocking(uninstall, client, options.pipeline)
            with contextlib.suppress(NotFoundError):
                await blocking(client.search_pipeline.delete, id="erank_sofas_short")
            await blocking(client.indices.delete, index="sofas")
    erank = cut["ext"]["erank"]
    assert erank["status"] == "reranked", erank
    assert erank["completions"]["cut"] + erank["completions"]["unscored"] >= 1, erank
    by_id = {h["_id"]: erank_of(h) for h in cut["hits"]["hits"]}
    assert by_id["sofa"]["completion"] in ("cut", "unscored"), by_id
    assert by_id["cat"]["completion"] == by_id["dog"]["completion"] == "full", by_id
