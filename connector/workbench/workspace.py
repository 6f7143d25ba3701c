"""Judgments on disk: a workspace folder in BEIR's layout, readable by ``erank eval``.

::

    <workspace>/queries.jsonl    {"_id": "q1", "text": ..., "metadata": {"index", "field"}}
    <workspace>/qrels/test.tsv   TREC qrels: "q1 0 <doc id> <grade>" per line, grades 0-3

A query is its text on one index and field; its id (``q1``, ``q2``, …) is given when it is
first judged and kept. Every change rewrites both files whole (written to a temporary file,
then renamed), so a reader never sees half a file. ``erank eval`` reads TREC qrels in
``qrels/<split>.tsv`` as well as BEIR's own tsv (:func:`connector.evaluation.beir.read_qrels`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.workbench.engine import INDEX_NAME

QUERIES_NAME = "queries.jsonl"
QRELS_PATH = Path("qrels") / "test.tsv"
SPLIT = "test"
MAX_GRADE = 3
_NO_SPACE = re.compile(r"^\S+$")  # a TREC qrels id cannot hold whitespace


class Judgment(BaseModel):
    """``PUT /api/judgments``: grade ``doc_id`` for the query (``grade`` null removes it)."""

    model_config = ConfigDict(extra="forbid")
    index: str = Field(min_length=1, max_length=255, pattern=INDEX_NAME)
    field: str = Field(min_length=1, max_length=1000)
    query: str = Field(min_length=1, max_length=2000)
    doc_id: str = Field(min_length=1, max_length=512, pattern=_NO_SPACE.pattern)
    grade: int | None = Field(ge=0, le=MAX_GRADE)


@dataclass
class Query:
    qid: str
    text: str
    index: str
    field: str
    grades: dict[str, int] = dataclasses.field(default_factory=dict)  # doc id -> grade

    def as_json(self) -> dict[str, Any]:
        return {
            "qid": self.qid,
            "query": self.text,
            "index": self.index,
            "field": self.field,
            "grades": dict(self.grades),
        }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class Workspace:
    """The judgments of one folder, loaded at start and written back on every change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self.queries: dict[str, Query] = {}
        self._load()

    @property
    def qrels_path(self) -> Path:
        return self.root / QRELS_PATH

    def _load(self) -> None:
        path = self.root / QUERIES_NAME
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    raw = json.loads(line)
                    meta = raw.get("metadata") or {}
                    qid = str(raw["_id"])
                    self.queries[qid] = Query(qid, raw["text"], meta["index"], meta["field"])
        if self.qrels_path.exists():
            for line in self.qrels_path.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[0] in self.queries:
                    self.queries[parts[0]].grades[parts[2]] = int(parts[3])

    def find(self, index: str, field: str, text: str) -> Query | None:
        for query in self.queries.values():
            if (query.index, query.field, query.text) == (index, field, text):
                return query
        return None

    def judge(self, judgment: Judgment) -> Query:
        """Record (or remove) one grade and write both files."""
        with self._lock:
            query = self.find(judgment.index, judgment.field, judgment.query)
            if query is None:
                qid = f"q{len(self.queries) + 1}"
                while qid in self.queries:
                    qid += "_"
                query = Query(qid, judgment.query, judgment.index, judgment.field)
                self.queries[qid] = query
            if judgment.grade is None:
                query.grades.pop(judgment.doc_id, None)
            else:
                query.grades[judgment.doc_id] = judgment.grade
            self._save()
            return query

    def qrels_text(self) -> str:
        """TREC qrels of every judged query: ``qid 0 docid grade``, one per line."""
        return "".join(
            f"{q.qid} 0 {doc} {grade}\n"
            for q in self.queries.values()
            for doc, grade in q.grades.items()
        )

    def judged(self) -> list[Query]:
        return [q for q in self.queries.values() if q.grades]

    def _save(self) -> None:
        lines = [
            json.dumps(
                {"_id": q.qid, "text": q.text, "metadata": {"index": q.index, "field": q.field}},
                ensure_ascii=False,
            )
            + "\n"
            for q in self.queries.values()
        ]
        _write(self.root / QUERIES_NAME, "".join(lines))
        _write(self.qrels_path, self.qrels_text())
