"""Smoke test of tests/engines/: every pinned OpenSearch and Elasticsearch really starts,
indexes with _bulk, and ranks a BM25 `match` query. One engine at a time; none is ever skipped.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from engines import (
    ALL_ENGINES,
    OPENSEARCH_VERSIONS,
    EngineKind,
    RunningEngine,
    fetch,
    fetch_plugin,
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
def test_engine_ranks_bm25(kind: EngineKind, version: str) -> None:
    began = time.monotonic()
    fetch(kind, version)  # the download, if any, is not part of the start time
    fetched = time.monotonic()
    with start_engine(kind, version) as engine:
        started = time.monotonic()
        assert engine.kind == kind and engine.version == version
        # (not `GET /`: Elasticsearch's integ-test-zip lacks the rest-root module)
        nodes = engine.request("GET", "/_nodes/_local")["nodes"]
        assert [n["version"] for n in nodes.values()] == [version]
        hits = index_and_search(engine)
        instance = engine.instance_dir
        print(
            f"{kind} {version}: fetch {fetched - began:.1f} s, start {started - fetched:.1f} s,"
            f" Java {engine.java_home}"
        )
    assert engine.process.poll() is not None, "engine still running after stop()"
    assert not instance.exists(), "instance directory left behind"
    assert [h["_id"] for h in hits] == EXPECTED_ORDER, hits
    scores = [h["_score"] for h in hits]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores), scores


def test_opensearch_plugin_install() -> None:
    """Plugin zips from Maven Central install offline (ml-commons needs job-scheduler). On 2.19:
    neither plugin's 3.8.0.0 is on Maven Central, so the 3.x line cannot carry them."""
    version = OPENSEARCH_VERSIONS[0]
    names = ("opensearch-job-scheduler", "opensearch-ml-plugin")
    zips = [fetch_plugin(name, version) for name in names]
    with start_engine("opensearch", version, plugins=zips) as engine:
        plugins = engine.request("GET", "/_cat/plugins?format=json")
    assert {p["component"] for p in plugins} >= {"opensearch-job-scheduler", "opensearch-ml"}, (
        plugins
    )
    assert all(p["version"] == f"{version}.0" for p in plugins), plugins
