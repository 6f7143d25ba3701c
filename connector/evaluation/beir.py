"""A BEIR-format collection read from local files: ``corpus.jsonl``, ``queries.jsonl`` and
``qrels/<split>.tsv``.

BEIR's qrels are tab-separated ``query-id corpus-id score`` with a header line. TREC qrels
(``qid 0 docid rel``, no header) are accepted in the same place, so collections published in
TREC form (e.g. TREC DL 2020's judgements) need no conversion. The corpus can be larger than
memory: it is streamed, and only what a run needs is kept.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ir_measures

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Collection:
    """The judged queries of one split: what an evaluation ranks and scores."""

    root: Path
    split: str
    queries: dict[str, str]  # query id -> text, every query that has judgements in the split
    qrels: Qrels

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"


def document_text(doc: dict[str, str]) -> str:
    """What gets indexed and reranked: title and text joined by a space (either may be empty),
    the usual way BEIR documents are given to rerankers."""
    return " ".join(part for part in (doc.get("title", ""), doc.get("text", "")) if part)


def iter_corpus(path: Path) -> Iterator[tuple[str, str]]:
    """``(doc id, document_text)`` for every line of a ``corpus.jsonl``, streamed."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                doc = json.loads(line)
                yield str(doc["_id"]), document_text(doc)


def read_qrels(path: Path) -> Qrels:
    """BEIR tsv (header, 3 columns) or TREC qrels (4 columns), by the first line's shape."""
    with path.open(encoding="utf-8") as f:
        first = f.readline().split()
    if len(first) == 4:
        qrels: Qrels = {}
        for q in ir_measures.read_trec_qrels(str(path)):
            qrels.setdefault(q.query_id, {})[q.doc_id] = int(q.relevance)
        return qrels
    qrels = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)  # header: query-id, corpus-id, score
        for row in rows:
            if row:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_collection(root: Path, split: str = "test") -> Collection:
    """Queries and judgements of ``split``; fails when a judged query has no text."""
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    texts: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                query = json.loads(line)
                if str(query["_id"]) in qrels:
                    texts[str(query["_id"])] = query["text"]
    missing = sorted(set(qrels) - set(texts))
    if missing:
        raise ValueError(
            f"{len(missing)} judged queries of {split!r} are not in queries.jsonl: {missing[:5]}"
        )
    return Collection(root=root, split=split, queries=texts, qrels=qrels)
