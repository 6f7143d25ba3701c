"""Smoke test of tests/engines/: every pinned OpenSearch and Elasticsearch really starts,
indexes with _bulk, and ranks a BM25 `match` query; a stopped engine leaves nothing behind.
None is ever skipped. The ranking checks use the session's shared engines (``engine_pool``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from engines import (
    ALL_ENGINES,
    OPENSEARCH_VERSIONS,
    EngineKind,
    EnginePool,
    RunningEngine,
    fetch,
    start_engine,
)

DOCS = {
    "1": "the quick brown fox jumps over the lazy dog",
    "2": "quick fox",
    "3": "a quick rabbit hides in the grass",
}
# BM25 for "quick fox": both terms in a short field > both terms in a long one > one term.
EXPECTED_ORDER = ["2", "1", "3"]


def index_and_search(engine: RunningEngine) -> list[dict[str, Any]]:
    engine.request(
        "PUT",
        "/smoke",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"text": {"type": "text", "analyzer": "standard"}}},
        },
    )
    bulk: list[dict[str, Any]] = []
    for doc_id, text in DOCS.items():
        bulk += [{"index": {"_index": "smoke", "_id": doc_id}}, {"text": text}]
    answer = engine.request("POST", "/_bulk?refresh=true", bulk)
    assert answer["errors"] is False, answer
    result = engine.request(
        "POST", "/smoke/_search", {"query": {"match": {"text": "quick fox"}}, "size": 10}
    )
    hits: list[dict[str, Any]] = result["hits"]["hits"]
    return hits


@pytest.mark.parametrize(("kind", "version"), ALL_ENGINES, ids=[f"{k}-{v}" for k, v in ALL_ENGINES])
def test_engine_ranks_bm25(engine_pool: EnginePool, kind: EngineKind, version: str) -> None:
    engine = engine_pool.get(kind, version)
    assert engine.kind == kind and engine.version == version
    # (not `GET /`: Elasticsearch's integ-test-zip lacks the rest-root module)
    nodes = engine.request("GET", "/_nodes/_local")["nodes"]
    assert [n["version"] for n in nodes.values()] == [version]
    hits = index_and_search(engine)
    assert [h["_id"] for h in hits] == EXPECTED_ORDER, hits
    scores = [h["_score"] for h in hits]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores), scores


def test_stopped_engine_leaves_nothing_behind() -> None:
    """The fastest engine to start, started and stopped on its own: process gone, instance
    directory removed."""
    kind, version = "opensearch", OPENSEARCH_VERSIONS[0]
    began = time.monotonic()
    fetch(kind, version)  # the download, if any, is not part of the start time
    fetched = time.monotonic()
    with start_engine(kind, version) as engine:
        started = time.monotonic()
        assert engine.request("GET", "/_cluster/health")["status"] in {"yellow", "green"}
        instance = engine.instance_dir
        print(f"{kind} {version}: fetch {fetched - began:.1f} s, start {started - fetched:.1f} s")
    assert engine.process.poll() is not None, "engine still running after stop()"
    assert not instance.exists(), "instance directory left behind"
