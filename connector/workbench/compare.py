"""Compare: one query's first stage and its ERank-fused order, side by side, with every score.

The first stage is BM25 (``match`` on a text field), kNN (Elasticsearch's top-level ``knn`` on a
vector field, with the caller's query vector) or both. The search goes through the same code
as ``erank proxy`` and the client wrappers
(:class:`connector.wrapping.Reranking`: the request rewritten by ``connector/rewrite/``, the
scoring call through the one gRPC client with the same budget and fail-open rules), so what the
workbench shows is what a search through the proxy answers. Both columns hold the whole window;
each ERank row carries what the browser needs to fuse again at another alpha or method
(``first_stage_score``, ``rank_score``, ``completion``) without calling the model.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from connector.rewrite.config import (
    DEFAULT_BUDGET_MS,
    ConfigError,
    PresetName,
    RerankOverrides,
)
from connector.rewrite.hits import HIT_FIELD, hit_text, hits_of
from connector.workbench.engine import INDEX_NAME, Engine
from connector.wrapping import Reranking
from erank_contract.vocabulary import FusionName, preview

MAX_WORKBENCH_WINDOW = 200
MAX_QUERY_CHARS = 2000
DEFAULT_RANK_CONSTANT = 60  # sent with every rrf search, so the browser fuses with the same k
MAX_DIMS = 4096  # Elasticsearch's dense_vector limit
KNN_CANDIDATES = 100  # num_candidates of a kNN first stage (at least the window)


class CompareRequest(BaseModel):
    """``POST /api/compare``'s body; each bad field is named in the 400."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    index: str = Field(min_length=1, max_length=255, pattern=INDEX_NAME)
    field: str = Field(min_length=1, max_length=1000)
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    window: int = Field(default=20, ge=1, le=MAX_WORKBENCH_WINDOW)
    fusion: FusionName = "zscore"
    alpha: float = Field(default=0.2, ge=0, le=1)
    rank_constant: int = Field(default=DEFAULT_RANK_CONSTANT, ge=1, le=100_000)
    instruction_preset: PresetName | None = None
    budget_ms: int = Field(default=DEFAULT_BUDGET_MS, ge=1, le=300_000)
    first_stage: Literal["bm25", "knn", "hybrid"] = "bm25"
    vector_field: str | None = Field(default=None, min_length=1, max_length=1000)
    query_vector: list[float] | None = Field(
        default=None, min_length=1, max_length=MAX_DIMS, validate_default=True
    )

    @field_validator("query_vector")
    @classmethod
    def _vector(cls, vector: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if info.data.get("first_stage", "bm25") == "bm25":
            return vector
        if vector is None or info.data.get("vector_field") is None:
            raise ValueError("knn and hybrid first stages need vector_field and query_vector")
        return vector

    def _first_stage(self) -> dict[str, Any]:
        """BM25 ``match`` on the field, Elasticsearch's top-level ``knn`` on the vector field,
        or both (``hybrid``: the engine adds the two scores)."""
        body: dict[str, Any] = {}
        if self.first_stage != "knn":
            body["query"] = {"match": {self.field: self.query}}
        if self.first_stage != "bm25":
            body["knn"] = {
                "field": self.vector_field,
                "query_vector": self.query_vector,
                "k": self.window,
                "num_candidates": max(self.window, KNN_CANDIDATES),
            }
        return body

    def search_body(self) -> dict[str, Any]:
        """The engine search, with the rerank settings as its ``ext.erank`` (as the proxy
        reads them; ``query_text`` because a vector holds no words)."""
        overrides = RerankOverrides(
            query_text=self.query,
            fields=(self.field,),
            window=self.window,
            alpha=self.alpha,
            fusion=self.fusion,
            rank_constant=self.rank_constant if self.fusion == "rrf" else None,
            instruction_preset=self.instruction_preset,
            budget_ms=self.budget_ms,
            explain=True,
        )
        return {
            **self._first_stage(),
            "size": self.window,
            "ext": {"erank": overrides.model_dump(exclude_none=True)},
        }


def _first_stage_rows(hits: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    return [
        {"id": h.get("_id"), "rank": i + 1, "score": h.get("_score"), "text": hit_text(h, [field])}
        for i, h in enumerate(hits)
    ]


_ERANK_KEYS = (
    "rank_score",
    "hybrid_score",
    "answer",
    "answer_probability",
    "status",
    "completion",
    "thinking_tokens",
    "reasoning",
)


def _erank_rows(hits: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """The reranked hits best first; a failed-open answer's hits keep the engine's order and
    have no ERank scores."""
    rows = []
    for i, hit in enumerate(hits):
        info = ((hit.get("fields") or {}).get(HIT_FIELD) or [{}])[0]
        row: dict[str, Any] = {
            "id": hit.get("_id"),
            "rank": i + 1,
            "first_stage_rank": info.get("first_stage_rank", i + 1),
            "first_stage_score": info.get("first_stage_score", hit.get("_score")),
            "score": hit.get("_score"),
            "text": hit_text(hit, [field]),
        }
        row |= {k: info[k] for k in _ERANK_KEYS if k in info}
        rows.append(row)
    return rows


async def compare(reranking: Reranking, engine: Engine, ask: CompareRequest) -> dict[str, Any]:
    """Both columns for ``ask``; raises :class:`connector.rewrite.config.ConfigError` for
    settings the proxy's rules refuse and :class:`EngineFailure` for the engine's refusals."""
    prepared = reranking.prepare("POST", f"/{ask.index}/_search", {}, ask.search_body())
    if prepared is None or prepared.plan is None:  # not for a valid index name and a match query
        raise ConfigError(f"[index] {preview(ask.index)}: this search is not reranked")
    answer, first_stage_ms = await engine.search(ask.index, prepared.body)
    engine_hits = copy.deepcopy(hits_of(answer) or [])
    finished = await reranking.finish_async(prepared, answer, first_stage_ms)
    status = dict((finished.get("ext") or {}).get("erank") or {})
    return {
        "query": ask.query,
        "index": ask.index,
        "field": ask.field,
        "window": ask.window,
        "fusion": ask.fusion,
        "alpha": ask.alpha,
        "rank_constant": ask.rank_constant,
        "erank": status,
        "first_stage": _first_stage_rows(engine_hits, ask.field),
        "reranked": _erank_rows(hits_of(finished) or [], ask.field),
    }
