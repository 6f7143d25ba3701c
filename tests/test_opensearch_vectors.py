"""The OpenSearch processor after first stages other than BM25, on a real OpenSearch with the
k-NN and neural-search plugins, our plugin zip, the REST front and the real scoring server:
a `knn` search reranked on `ext.erank.query_text`, a `hybrid` search reranked after
neural-search's normalization processor (its normalized `_score`s are the first-stage scores),
and a kNN-only search without a query text skipped, never guessed.

They run where Maven Central serves k-NN and neural-search for the engine's version: 2.19.6.
No 3.x release of neural-search is there (3.0.0.0, 3.1.0.0, 3.2.0.0, 3.3.0.0, 3.3.2.0, 3.4.0.0,
3.5.0.0 and 3.8.0.0 checked 2026-11-28 with `mvn dependency:get`; k-NN has 3.5.0.0, not
3.8.0.0), so 3.x runs the BM25 tests of `test_opensearch_native` only. k-NN extends
`lang-painless`, which 2.19.6's integ-test-zip lacks: the distribution with it is the one
`test_opensearch_ml_commons` assembles from Maven Central.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from engines import RunningEngine
from opensearchpy import OpenSearch
from test_opensearch_native import (
    ALPHA,
    CORPUS,
    FIELDS,
    QUERY,
    WINDOW,
    assert_scored_as_grpc,
    blocking,
    erank_of,
    search,
)

from erank_contract.client import AsyncRerankerClient
from opensearch_plugin.install import connect, install
from opensearch_plugin.options import InstallOptions

# Where the `knn` and `hybrid` queries can run: opensearch-knn and neural-search X.Y.Z.0 on
# Maven Central (see the module's docstring for the 3.x releases checked).
VECTORS = "vectors"
QUERY_VECTOR = [1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def opensearch(vector_opensearch: RunningEngine) -> RunningEngine:
    """The session's OpenSearch with our plugin, k-NN and neural-search (tests/conftest.py)."""
    return vector_opensearch


def vector(i: int) -> list[float]:
    """Document ``d<i>``'s vector: nearer to QUERY_VECTOR the smaller ``i``."""
    angle = i * 0.2
    return [math.cos(angle), math.sin(angle), 0.05 * i]


@pytest.fixture(scope="module")
def vector_client(opensearch: RunningEngine) -> OpenSearch:
    """The corpus of `test_opensearch_native`, with a 3-dimensional `knn_vector` per document
    (Lucene HNSW)."""
    client = connect(opensearch.url)
    client.indices.delete(index=VECTORS, ignore_unavailable=True)  # a shared engine
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
async def pipeline(vector_client: OpenSearch, rest_url: str) -> str:
    options = InstallOptions(
        endpoint=rest_url,
        pipeline="erank",
        fields=FIELDS,
        window=WINDOW,
        alpha=ALPHA,
        timeout_ms=120_000,
    )
    assert (await blocking(install, vector_client, options)).action == "created"
    return options.pipeline


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
        first = erank_of(hit)["first_stage_score"]
        assert first == pytest.approx(first_by_id[hit["_id"]], rel=1e-6)
    await assert_scored_as_grpc(reranked, window, query, tiny_client)


def knn_body(size: int = 10) -> dict[str, Any]:
    return {
        "query": {"knn": {"vec": {"vector": QUERY_VECTOR, "k": size}}},
        "size": size,
        "_source": list(FIELDS),
    }


async def test_knn_search_is_reranked_on_the_given_query_text(
    vector_client: OpenSearch, pipeline: str, tiny_client: AsyncRerankerClient
) -> None:
    knn = (await search(vector_client, knn_body(), None, VECTORS))["hits"]["hits"]
    assert len(knn) == 10
    body = {**knn_body(), "ext": {"erank": {"query_text": QUERY}}}
    answer = await search(vector_client, body, pipeline, VECTORS)
    await assert_reranked_as_the_server_scores(answer, knn, QUERY, tiny_client)


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
