"""Cohere's rerank shapes: ``POST /v1/rerank`` (the v1 client, ml-commons, Elasticsearch, our Java
processor) and ``POST /v2/rerank`` (``cohere.ClientV2``, what current Cohere integrations use).

Both take ERank's extensions (instruction, fusion with first-stage scores, best passage, the
reasoning, the call's budget: :class:`ErankOptions`) and answer the same result objects, each
with how its answer was reached (``completion``, ``thinking_tokens``) and the counts of those in
``completions``; v2 has no ``return_documents`` (Cohere removed
it), takes ``max_tokens_per_doc`` as the truncation length, and adds Cohere's ``id`` and
``meta``. Every integer is range-checked here (a value a ``uint32`` of the gRPC request cannot
hold is a 400 naming the field and the limit, never a 500 that would also close the client's
keep-alive connection); the server checks every other limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from connector.budget import DEFAULT_ON_BUDGET, MAX_BUDGET_MS, OnBudget, pairing_error
from connector.results import completion_parts, completions_json, optional_parts, status_name
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import (
    FUSION_USED,
    UINT32_MAX,
    FusionName,
    LongDocumentsName,
    fused,
    scoring_options,
)


class ErankOptions(BaseModel):
    """The request fields every route shares: the query, ERank's instruction, and the call's
    budget (:mod:`connector.budget`): ``budget_ms`` (none: the front's ``--timeout``),
    ``on_budget`` (``cut``: the server cuts reasoning short to answer within it; ``fail_open``:
    all or nothing, a 504 past it) and ``finish_in_background`` (cut documents go on into the
    server's score cache; ``cut`` only)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    query: str
    instruction: str | None = None
    instruction_preset: str | None = None  # checked by the server (unknown → 400)
    budget_ms: int | None = Field(None, ge=1, le=MAX_BUDGET_MS)
    on_budget: OnBudget = DEFAULT_ON_BUDGET
    finish_in_background: bool = False

    @field_validator("finish_in_background")
    @classmethod
    def _only_when_cut(cls, finish: bool, info: ValidationInfo) -> bool:
        error = pairing_error(info.data.get("on_budget"), finish)
        if error is not None:
            raise PydanticCustomError("invalid_combination", error)
        return finish

    def to_proto(self) -> pb.RerankRequest:
        """The gRPC request (each route's own shape); the budget's fields are the front's."""
        raise NotImplementedError

    @staticmethod
    def rest_field(grpc_field: str) -> str:
        """The JSON field a gRPC ``BadRequest`` field path stands for."""
        return grpc_field


class CohereBody(ErankOptions):
    """What Cohere's v1 and v2 requests share, plus ERank's fusion and passage options."""

    documents: list[str]
    top_n: int | None = Field(None, ge=1, le=UINT32_MAX)
    first_stage_scores: list[float] | None = None
    alpha: float | None = None
    fusion: FusionName | None = None
    rank_constant: int | None = Field(None, ge=1, le=UINT32_MAX)  # only with rrf (server)
    long_documents: LongDocumentsName | None = None
    passage_overlap: int | None = Field(None, ge=0, le=UINT32_MAX)  # only with best_passage
    return_reasoning: bool = False

    @field_validator("first_stage_scores")
    @classmethod
    def _one_score_per_document(
        cls, scores: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        documents = info.data.get("documents")
        if scores is not None and documents is not None and len(scores) != len(documents):
            raise PydanticCustomError(
                "length_mismatch",
                "holds {scores} scores for {documents} documents; give one score per document",
                {"scores": len(scores), "documents": len(documents)},
            )
        return scores

    def truncate_length(self) -> int:
        """Tokens query and documents are cut to; 0: the server's default (2048)."""
        return 0

    def to_proto(self) -> pb.RerankRequest:
        """The gRPC request; document ids are the positions, so results map back by index."""
        scores: Sequence[float | None] = self.first_stage_scores or [None] * len(self.documents)
        return pb.RerankRequest(
            query=self.query,
            instruction=self.instruction or "",
            instruction_preset=self.instruction_preset or "",
            documents=[
                pb.Document(id=str(i), text=text, first_stage_score=score)
                for i, (text, score) in enumerate(zip(self.documents, scores, strict=True))
            ],
            truncate_length=self.truncate_length(),
            alpha=self.alpha,
            top_n=self.top_n or 0,
            return_reasoning=self.return_reasoning,
            **scoring_options(
                self.fusion, self.rank_constant, self.long_documents, self.passage_overlap
            ),
        )

    @staticmethod
    def rest_field(grpc_field: str) -> str:
        """The JSON field a gRPC ``BadRequest`` field path stands for (documents are plain
        strings here, and their first-stage scores a parallel list)."""
        if grpc_field.startswith("documents[") and "]." in grpc_field:
            index, _, member = grpc_field[len("documents[") :].partition("].")
            if member == "first_stage_score":
                return f"first_stage_scores[{index}]"
            return f"documents[{index}]"
        return grpc_field


class RerankBody(CohereBody):
    """``POST /v1/rerank``: Cohere's v1 request (``return_documents`` adds ``document.text``)."""

    return_documents: bool = False


class RerankBodyV2(CohereBody):
    """``POST /v2/rerank``: Cohere's v2 request. ``model`` (which the v2 client must send),
    ``priority`` and ``relevant_spans`` are accepted and ignored: one model serves here."""

    model: str | None = None
    max_tokens_per_doc: int | None = Field(None, ge=1, le=UINT32_MAX)
    priority: int | None = Field(None, ge=0, le=UINT32_MAX)

    def truncate_length(self) -> int:
        return self.max_tokens_per_doc or 0

    @staticmethod
    def rest_field(grpc_field: str) -> str:
        if grpc_field == "truncate_length":
            return "max_tokens_per_doc"
        return CohereBody.rest_field(grpc_field)


def rerank_json(
    response: pb.RerankResponse, documents: Sequence[str] | None = None
) -> dict[str, Any]:
    """The v1 ``200`` body for a gRPC response; ``documents`` adds Cohere's ``document.text``."""
    is_fused = fused(response)
    results = []
    for r in response.results:
        item: dict[str, Any] = {
            "index": r.index,
            "relevance_score": float(r.hybrid_score if is_fused else r.rank_score),
            "rank_score": float(r.rank_score),
            "answer": r.answer,
            "answer_probability": float(r.answer_probability),
            "status": status_name(r),
            **completion_parts(r),
        }
        if r.HasField("hybrid_score"):
            item["hybrid_score"] = float(r.hybrid_score)
        if r.HasField("first_stage_score"):
            item["first_stage_score"] = float(r.first_stage_score)
        if r.status_detail:
            item["status_detail"] = r.status_detail
        if documents is not None:
            item["document"] = {"text": documents[r.index]}
        item |= optional_parts(r)
        results.append(item)
    body: dict[str, Any] = {
        "model": response.model,
        "fused": is_fused,
        **({"fusion": FUSION_USED[response.fusion]} if response.fusion in FUSION_USED else {}),
        "results": results,
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "generated_tokens": response.usage.generated_tokens,
            "cached_prompt_tokens": response.usage.cached_prompt_tokens,
            "cache_hits": response.usage.cache_hits,
            "cache_misses": response.usage.cache_misses,
        },
        "completions": completions_json(response),
    }
    if response.notice:
        body["notice"] = response.notice
    return body


def rerank_v2_json(response: pb.RerankResponse) -> dict[str, Any]:
    """The v2 ``200`` body: v1's, plus Cohere's ``id`` and ``meta`` (API version, tokens)."""
    return {
        "id": str(uuid.uuid4()),
        **rerank_json(response),
        "meta": {
            "api_version": {"version": "2"},
            "tokens": {
                "input_tokens": float(response.usage.prompt_tokens),
                "output_tokens": float(response.usage.generated_tokens),
            },
        },
    }
