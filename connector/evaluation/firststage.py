"""First-stage candidates: what the reranker gets to see, per query, best first.

From a TREC run file (``qid Q0 docid rank score tag``, e.g. a BM25 run from Pyserini), cut to the
top ``depth`` of each query by score; equal scores keep the file's order. Document texts come
from the collection's corpus, streamed once for just the documents the run names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ir_measures
from rich.console import Console
from rich.progress import Progress

from connector.evaluation.beir import Collection, iter_corpus


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    score: float  # the first-stage score, fused with ERank's by the server
    text: str


Candidates = dict[str, list[Candidate]]  # query id -> best first


def from_run_file(
    path: Path, collection: Collection, depth: int, console: Console | None = None
) -> Candidates:
    """The top ``depth`` of ``path`` for the collection's judged queries, with their texts.

    Documents the corpus lacks are an error: reranking without the text would be meaningless.
    """
    per_query: dict[str, list[tuple[str, float]]] = {}
    for d in ir_measures.read_trec_run(str(path)):
        if d.query_id in collection.queries:
            per_query.setdefault(d.query_id, []).append((d.doc_id, float(d.score)))
    ranked = {q: sorted(docs, key=lambda ds: -ds[1])[:depth] for q, docs in per_query.items()}
    wanted = {doc_id for docs in ranked.values() for doc_id, _ in docs}
    texts: dict[str, str] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("reading corpus", total=None)
        for doc_id, text in iter_corpus(collection.corpus_path):
            progress.advance(task)
            if doc_id in wanted:
                texts[doc_id] = text
    missing = sorted(wanted - set(texts))
    if missing:
        raise ValueError(f"{len(missing)} documents of {path} are not in the corpus: {missing[:5]}")
    return {q: [Candidate(d, s, texts[d]) for d, s in docs] for q, docs in ranked.items()}
