"""From per-document answers to the ordered ``RerankResponse``: fusion, ordering, ``top_n``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from erank.fusion import hybrid_scores
from erank.score import ParsedAnswer
from erank.settings import ScoringModeName
from erank.validation import MODE_ENUMS, RerankParams
from erank_contract.v1 import reranker_pb2 as pb

CompletionName: TypeAlias = Literal["full", "cut", "unscored"]
COMPLETION_ENUMS: dict[CompletionName, pb.Completion.ValueType] = {
    "full": pb.COMPLETION_FULL,
    "cut": pb.COMPLETION_CUT,
    "unscored": pb.COMPLETION_UNSCORED,
}


@dataclass(frozen=True)
class Scored:
    """One document's outcome before ordering."""

    parsed: ParsedAnswer
    truncation: (
        str  # what the prompt cut ("" when nothing), e.g. "document cut to 2048 of 5000 tokens"
    )
    mode: ScoringModeName = "full"
    cached: bool = False
    passage: pb.Passage | None = None  # best-passage mode: the passage this score came from
    completion: CompletionName = "full"  # cut or unscored at the call's deadline (anytime.py)
    thinking_tokens: int = 0  # tokens generated before the answer (before the cut, if cut)


def rank(params: RerankParams, scored: Sequence[Scored]) -> tuple[list[pb.RerankResult], str]:
    """Results best first, and a notice when nothing could be fused.

    Ordered by hybrid score when every document has a first-stage score, else by rank score;
    descending; ties keep input order. ``top_n`` (0 = all) cuts after ordering.
    """
    rank_scores = _for_fusion(scored)
    first = params.first_stage
    missing = sum(f is None for f in first)
    hybrid: list[float] | None = None
    notice = ""
    if missing == 0:
        hybrid = hybrid_scores(
            [f for f in first if f is not None],
            rank_scores,
            params.alpha,
            params.fusion,
            params.rank_constant,
        )
    elif missing < len(first):
        notice = (
            f"{missing} of {len(first)} documents have no first_stage_score: "
            "nothing was fused, results are ordered by rank_score"
        )
    keys = hybrid if hybrid is not None else rank_scores
    order = sorted(range(len(scored)), key=lambda i: (-keys[i], i))
    if params.top_n:
        order = order[: params.top_n]
    return [result(params, scored[i], i, hybrid) for i in order], notice


def _for_fusion(scored: Sequence[Scored]) -> list[float]:
    """Rank scores as fusion and ordering see them: an unscored document (the deadline came
    first) takes the mean of the scored ones, so it is neither sunk nor lifted on the model's
    account and keeps its first-stage standing."""
    known = [s.parsed.rank_score for s in scored if s.completion != "unscored"]
    mean = sum(known) / len(known) if known else 0.0
    return [mean if s.completion == "unscored" else s.parsed.rank_score for s in scored]


def result(
    params: RerankParams, s: Scored, i: int, hybrid: list[float] | None = None
) -> pb.RerankResult:
    """Document ``i``'s result; ``hybrid`` None leaves hybrid_score unset (streamed events)."""
    p = s.parsed
    if s.completion == "unscored":
        status = pb.RESULT_STATUS_UNSCORED
    elif p.answer is None:
        status = pb.RESULT_STATUS_NO_ANSWER
    elif s.truncation:
        status = pb.RESULT_STATUS_TRUNCATED_INPUT
    else:
        status = pb.RESULT_STATUS_OK
    detail = "; ".join(d for d in (p.detail, s.truncation) if d)
    out = pb.RerankResult(
        id=params.ids[i],
        index=i,
        rank_score=p.rank_score,
        answer=p.answer or 0,
        answer_probability=p.probability,
        status=status,
        truncated=bool(s.truncation),
        status_detail=detail,
        mode=MODE_ENUMS[s.mode],
        cached=s.cached,
        completion=COMPLETION_ENUMS[s.completion],
        thinking_tokens=s.thinking_tokens,
    )
    if params.first_stage[i] is not None:
        out.first_stage_score = params.first_stage[i]  # type: ignore[assignment]
    if hybrid is not None:
        out.hybrid_score = hybrid[i]
    if params.return_reasoning:
        out.reasoning = p.reasoning
    if s.passage is not None:
        out.passage.CopyFrom(s.passage)
    return out
