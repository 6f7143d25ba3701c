"""From the engine's window of BM25 hits to the user's page: texts out, reranked order in.

Per reranked hit, ``fields._erank`` (a one-element list, as every entry of ``fields`` is; the
same as the OpenSearch ``erank`` processor of this repository) holds ``first_stage_score``,
``first_stage_rank``, ``relevance_score`` (the new ``_score``), ``rank_score``, ``hybrid_score``,
``answer``, ``answer_probability``, ``status``, ``completion`` (``full``, ``cut``: the reasoning
was closed at the deadline, or ``unscored``) with ``thinking_tokens``, ``reasoning`` (the
model's text before its answer, only when the search asked: ``explain``), ``passage`` (with
``long_documents: best_passage``) and, when none of the configured fields had a value,
``text_missing: true`` (that hit was scored on empty text; it is never dropped). Hits below the
window (a page reaching past it) keep their BM25 order but score below every reranked hit, as the
OpenSearch processor scores them (:func:`below_window_score`), so a page is always in ``_score``
order; their ``_erank`` holds ``first_stage_score``, ``first_stage_rank`` and
``below_window: true``. The response's ``ext.erank`` says what happened, which fusion method made
the scores, how many hits got a full, a cut or no answer (``completions``,
:func:`connector.results.completions_json`) and how long the first stage and the rerank took.

Fusion is the scoring server's: the hits' ``_score`` go out as ``first_stage_score`` and the
server's ``hybrid_score`` (or ``rank_score`` when it did not fuse) comes back as the new score.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.results import completion_parts, completions_json, optional_parts, status_name
from connector.rewrite.search import SearchPlan
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import FUSION_USED, fused, scoring_options

HIT_FIELD = "_erank"


class MalformedResponse(ValueError):
    """The scoring server's answer is not a permutation of the documents sent."""


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in the engine (first stage) and in the scoring call (rerank)."""

    first_stage_ms: float
    rerank_ms: float = 0.0

    def as_json(self) -> dict[str, float]:
        return {
            "first_stage_ms": round(self.first_stage_ms, 3),
            "rerank_ms": round(self.rerank_ms, 3),
        }

    def server_timing(self) -> str:
        """The standard ``Server-Timing`` header value."""
        return f"first_stage;dur={self.first_stage_ms:.3f}, rerank;dur={self.rerank_ms:.3f}"


def _leaves(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [t for v in value for t in _leaves(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaves(v)]
    return [str(value)]


def _lookup(source: object, path: str) -> object:
    """A dotted path in ``_source``: keys that contain dots, or nested objects and arrays."""
    if not isinstance(source, dict):
        if isinstance(source, list):
            values = [_lookup(item, path) for item in source]
            return [v for v in values if v is not None] or None
        return None
    if path in source:
        return source[path]
    head, dot, rest = path.partition(".")
    while dot:
        if head in source:
            found = _lookup(source[head], rest)
            if found is not None:
                return found
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return None


def hit_text(hit: Mapping[str, Any], fields: Sequence[str]) -> str | None:
    """The hit's text for ``fields``: from ``_source``, else ``fields``/docvalues, else the
    highlighted fragments; values joined by newlines. None when no field has a value."""
    parts: list[str] = []
    for name in fields:
        value = _lookup(hit.get("_source"), name)
        if value is None:
            value = (hit.get("fields") or {}).get(name)
        if value is None:
            value = (hit.get("highlight") or {}).get(name)
        parts += _leaves(value)
    return "\n".join(parts) if parts else None


def hits_of(response: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """``hits.hits`` of a search response, or None when it has none (not a search answer)."""
    hits = response.get("hits")
    inner = hits.get("hits") if isinstance(hits, dict) else None
    return inner if isinstance(inner, list) else None


def rerank_request(
    plan: SearchPlan, response: Mapping[str, Any]
) -> tuple[pb.RerankRequest, list[bool]]:
    """The scoring call for the window's hits, and which of them had no text."""
    window = (hits_of(response) or [])[: plan.window]
    texts = [hit_text(h, plan.config.fields) for h in window]
    scores: list[Any] = [h.get("_score") for h in window]
    fuse = all(isinstance(s, (int, float)) for s in scores)
    documents = [
        pb.Document(id=str(i), text=text or "", first_stage_score=float(score) if fuse else None)
        for i, (text, score) in enumerate(zip(texts, scores, strict=True))
    ]
    config = plan.config
    request = pb.RerankRequest(
        query=plan.query_text,
        instruction=config.instruction or "",
        instruction_preset=config.instruction_preset or "",
        documents=documents,
        alpha=config.alpha,
        truncate_length=config.truncate_length,
        return_reasoning=config.explain,
        **scoring_options(
            config.fusion, config.rank_constant, config.long_documents, config.passage_overlap
        ),
    )
    return request, [t is None for t in texts]


def reranked_order(count: int, response: pb.RerankResponse) -> list[int]:
    """Window positions best first; :class:`MalformedResponse` unless each appears once."""
    order = [r.index for r in response.results]
    if sorted(order) != list(range(count)) or any(r.id != str(r.index) for r in response.results):
        raise MalformedResponse(
            f"scoring server returned {len(order)} results for {count} documents"
            " or ids that do not match their positions"
        )
    return order


def _strip_added(hit: dict[str, Any], added: Sequence[str]) -> None:
    fields = hit.get("fields")
    if added and isinstance(fields, dict):
        for name in added:
            fields.pop(name, None)
        if not fields:
            del hit["fields"]


def _erank_info(
    hit: Mapping[str, Any], rank: int, result: pb.RerankResult, score: float, missing: bool
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "first_stage_score": hit.get("_score"),
        "first_stage_rank": rank + 1,
        "relevance_score": score,
        "rank_score": float(result.rank_score),
        "answer": result.answer,
        "answer_probability": float(result.answer_probability),
        "status": status_name(result),
        **completion_parts(result),
    }
    if result.HasField("hybrid_score"):
        info["hybrid_score"] = float(result.hybrid_score)
    info |= optional_parts(result)
    if missing:
        info["text_missing"] = True
    return info


def below_window_score(lowest_reranked: float, distance: int) -> float:
    """The ``_score`` of the hit ``distance`` places (0-based) below the rank window:
    ``lowest_reranked - 1 - distance``, strictly below every reranked hit even where floats
    cannot step by one (the rule of the Java processor's ``Reorder.belowWindowScore``)."""
    score = lowest_reranked - 1.0 - distance
    return score if score < lowest_reranked else math.nextafter(lowest_reranked, -math.inf)


def _below_window(hits: list[dict[str, Any]], window: int, lowest: float) -> None:
    for distance, hit in enumerate(hits):
        info: dict[str, Any] = {"first_stage_rank": window + distance + 1, "below_window": True}
        if isinstance(hit.get("_score"), (int, float)):
            info = {"first_stage_score": hit["_score"], **info}
        hit["_score"] = below_window_score(lowest, distance)
        hit["fields"] = {**(hit.get("fields") or {}), HIT_FIELD: [info]}


def _page(plan: SearchPlan, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    page = hits[plan.page_from : plan.page_from + plan.page_size]
    for hit in page:
        _strip_added(hit, plan.added_fields)
    return page


def reranked_body(
    plan: SearchPlan,
    response: Mapping[str, Any],
    answer: pb.RerankResponse,
    missing: Sequence[bool],
    timings: Timings,
) -> dict[str, Any]:
    """The user's page cut from the reranked window followed by the rest in BM25 order."""
    body = copy.deepcopy(dict(response))
    hits = hits_of(body) or []
    window = hits[: plan.window]
    order = reranked_order(len(window), answer)
    is_fused = fused(answer)
    reordered: list[dict[str, Any]] = []
    for result in answer.results:
        hit = window[result.index]
        score = float(result.hybrid_score if is_fused else result.rank_score)
        info = _erank_info(hit, result.index, result, score, missing[result.index])
        hit["_score"] = score
        hit["fields"] = {**(hit.get("fields") or {}), HIT_FIELD: [info]}
        reordered.append(hit)
    below = hits[len(order) :]
    if reordered:
        body["hits"]["max_score"] = max(h["_score"] for h in reordered)
        _below_window(below, len(order), min(h["_score"] for h in reordered))
    everything = reordered + below
    body["hits"]["hits"] = _page(plan, everything)
    status = {
        "status": "reranked",
        "model": answer.model,
        "fused": is_fused,
        **({"fusion": FUSION_USED[answer.fusion]} if answer.fusion in FUSION_USED else {}),
        "reranked": len(order),
        "window": plan.window,
        **({"text_missing": sum(missing)} if any(missing) else {}),
        "completions": completions_json(answer),
        **timings.as_json(),
    }
    body["ext"] = {**(body.get("ext") or {}), "erank": status}
    return body


def failed_open_body(
    plan: SearchPlan,
    response: Mapping[str, Any],
    error_type: str,
    reason: str,
    timings: Timings,
) -> dict[str, Any]:
    """The engine's own BM25 page (what a direct search returns), marked as failed open."""
    body = copy.deepcopy(dict(response))
    hits = hits_of(body)
    if hits is not None:
        body["hits"]["hits"] = _page(plan, hits)
    status = {
        "status": "failed",
        "error": {"type": error_type, "reason": reason},
        "fail_open": True,
        "window": plan.window,
        **timings.as_json(),
    }
    body["ext"] = {**(body.get("ext") or {}), "erank": status}
    return body
