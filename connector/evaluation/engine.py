"""First-stage candidates from a real search engine: the corpus indexed into OpenSearch or
Elasticsearch through its official client, then BM25 top-k per query.

One text field, ``contents`` (:func:`connector.evaluation.beir.document_text`, the same text
the reranker reads), standard analyzer, the engine's default BM25 (k1 1.2, b 0.75), one shard so
scores do not depend on how documents spread over shards. An index that already holds as many
documents as the corpus is reused, because indexing a large corpus takes far longer than
searching it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import Progress

from connector.evaluation.beir import Collection, iter_corpus
from connector.evaluation.firststage import Candidate, Candidates

EngineKind = Literal["opensearch", "elasticsearch"]
FIELD = "contents"
INDEX_BODY = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {"properties": {FIELD: {"type": "text", "analyzer": "standard"}}},
}


def connect(kind: EngineKind, url: str, timeout: float = 120.0) -> Any:
    """The engine's official (blocking) client: opensearch-py, or elasticsearch-py 9."""
    if kind == "opensearch":
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[url], timeout=timeout)
    from elasticsearch import Elasticsearch

    return Elasticsearch(url, request_timeout=timeout)


def _streaming_bulk(kind: EngineKind) -> Any:
    """The client library's own bulk helper (chunking, per-document outcomes)."""
    if kind == "opensearch":
        from opensearchpy import helpers as os_helpers

        return os_helpers.streaming_bulk
    from elasticsearch import helpers as es_helpers

    return es_helpers.streaming_bulk


def _corpus_size(path: Path) -> int:
    return sum(1 for _ in iter_corpus(path))


def build_index(
    client: Any,
    kind: EngineKind,
    index: str,
    corpus: Path,
    rebuild: bool = False,
    console: Console | None = None,
) -> bool:
    """Index ``corpus`` into ``index`` unless it already holds that many documents; True when it
    (re)built. An existing index of another size is an error unless ``rebuild``: it most likely
    holds another collection."""
    size = _corpus_size(corpus)
    if client.indices.exists(index=index):
        held = int(client.count(index=index)["count"])
        if held == size and not rebuild:
            return False
        if not rebuild:
            raise ValueError(
                f"index {index!r} holds {held} documents, the corpus {size}: "
                "pass --rebuild-index to replace it, or another --index"
            )
        client.indices.delete(index=index)
    client.indices.create(index=index, body=INDEX_BODY)
    actions = (
        {"_index": index, "_id": doc_id, "_source": {FIELD: text}}
        for doc_id, text in iter_corpus(corpus)
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"indexing into {index}", total=size)
        for ok, item in _streaming_bulk(kind)(client, actions, chunk_size=500):
            if not ok:
                raise RuntimeError(f"indexing failed: {item}")
            progress.advance(task)
    client.indices.refresh(index=index)
    return True


def bm25_candidates(
    client: Any, index: str, collection: Collection, depth: int, console: Console | None = None
) -> Candidates:
    """The engine's BM25 top ``depth`` for every judged query, with ``_score`` and text."""
    candidates: Candidates = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("BM25 first stage", total=len(collection.queries))
        for qid, text in collection.queries.items():
            body = {"query": {"match": {FIELD: text}}, "size": depth, "_source": [FIELD]}
            hits = client.search(index=index, body=body)["hits"]["hits"]
            candidates[qid] = [
                Candidate(h["_id"], float(h["_score"]), h["_source"][FIELD]) for h in hits
            ]
            progress.advance(task)
    return candidates
