"""Checks a ``RerankRequest`` against the server's limits before any engine work.

Every violation names the field and the limit, so a caller can fix the request without reading
server logs; the gRPC service turns them into ``INVALID_ARGUMENT`` with a ``google.rpc.BadRequest``
detail. Nothing is silently cut: texts over the size limit are refused, and truncation to
``truncate_length`` tokens is reported per document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from erank.fusion import DEFAULT_RANK_CONSTANT
from erank.settings import ScoringModeName, ServerSettings
from erank_contract.instructions import PRESETS
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import FUSION_NAMES, LONG_DOCUMENTS_ENUMS, FusionName, preview


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class InvalidRequest(ValueError):
    """A request the server refuses; ``violations`` lists every problem found."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


@dataclass(frozen=True)
class RerankParams:
    """A valid request with the server defaults filled in."""

    query: str
    instruction: str
    ids: list[str]
    texts: list[str]
    first_stage: list[float | None]
    truncate_length: int
    alpha: float
    top_n: int
    return_reasoning: bool
    mode: ScoringModeName = "full"
    thinking_budget: int | None = None  # set in thinking_budget mode only
    fusion: FusionName = "zscore"
    rank_constant: int = DEFAULT_RANK_CONSTANT
    best_passage: bool = False  # LONG_DOCUMENTS_BEST_PASSAGE, else the reference's truncation
    passage_overlap: int = 0  # tokens shared by neighbouring passages (best_passage only)
    budget_ms: int = 0  # the caller's budget from receipt; 0 = none (a gRPC deadline may be)
    cut_at_deadline: bool = True  # DEADLINE_POLICY_CUT, else the call fails at its deadline
    finish_in_background: bool = False


DEADLINE_POLICIES = (
    pb.DEADLINE_POLICY_UNSPECIFIED,
    pb.DEADLINE_POLICY_CUT,
    pb.DEADLINE_POLICY_FAIL,
)

MODE_NAMES: dict[pb.ScoringMode.ValueType, ScoringModeName] = {
    pb.SCORING_MODE_FULL: "full",
    pb.SCORING_MODE_THINKING_BUDGET: "thinking_budget",
    pb.SCORING_MODE_SCORE_ONLY: "score_only",
}
MODE_ENUMS: dict[ScoringModeName, pb.ScoringMode.ValueType] = {
    name: value for value, name in MODE_NAMES.items()
}
_MAX_REPORTED = 20  # keep error messages readable for a request with a thousand bad documents


def validate(request: pb.RerankRequest, settings: ServerSettings) -> RerankParams:
    """The request's parameters, or ``InvalidRequest`` naming each bad field and its limit."""
    bad: list[Violation] = []
    limit = settings.max_text_chars
    if not request.query.strip():
        bad.append(Violation("query", "must not be empty"))
    for name in ("query", "instruction"):
        if len(getattr(request, name)) > limit:
            n = len(getattr(request, name))
            bad.append(Violation(name, f"is {n} characters; the limit is {limit}"))
    n_docs = len(request.documents)
    if n_docs == 0:
        bad.append(Violation("documents", "must hold at least one document"))
    if n_docs > settings.max_documents:
        bad.append(
            Violation(
                "documents", f"holds {n_docs} documents; the limit is {settings.max_documents}"
            )
        )
    else:
        _documents(request, limit, bad)
    truncate_length = request.truncate_length or settings.default_truncate_length
    if truncate_length > settings.max_truncate_length:
        bad.append(
            Violation(
                "truncate_length",
                f"is {truncate_length} tokens; the limit is {settings.max_truncate_length}",
            )
        )
    alpha = request.alpha if request.HasField("alpha") else settings.default_alpha
    if not 0.0 <= alpha <= 1.0:  # also false for NaN
        bad.append(Violation("alpha", f"must be in [0, 1], got {alpha}"))
    mode, budget = _mode(request, settings, bad)
    instruction = _instruction(request, settings, bad)
    fusion, rank_constant = _fusion(request, bad)
    best_passage, overlap = _long_documents(request, truncate_length, bad)
    cut = _deadline_policy(request, settings, bad)
    if bad:
        raise InvalidRequest(bad[:_MAX_REPORTED])
    return RerankParams(
        query=request.query,
        instruction=instruction,
        ids=[d.id for d in request.documents],
        texts=[d.text for d in request.documents],
        first_stage=[
            d.first_stage_score if d.HasField("first_stage_score") else None
            for d in request.documents
        ],
        truncate_length=truncate_length,
        alpha=alpha,
        top_n=request.top_n,
        return_reasoning=request.return_reasoning,
        mode=mode,
        thinking_budget=budget,
        fusion=fusion,
        rank_constant=rank_constant,
        best_passage=best_passage,
        passage_overlap=overlap,
        budget_ms=request.budget_ms,
        cut_at_deadline=cut,
        finish_in_background=request.finish_in_background,
    )


def _documents(request: pb.RerankRequest, limit: int, bad: list[Violation]) -> None:
    """Each document's id, text and first-stage score. Not called over ``max_documents``: a
    request of millions of documents is refused by its count, before a dict of their ids."""
    seen: dict[str, int] = {}
    for i, doc in enumerate(request.documents):
        if not doc.id:
            bad.append(Violation(f"documents[{i}].id", "must not be empty"))
        elif doc.id in seen:
            bad.append(
                Violation(
                    f"documents[{i}].id",
                    f"duplicates documents[{seen[doc.id]}].id {preview(doc.id)}",
                )
            )
        else:
            seen[doc.id] = i
        if len(doc.text) > limit:
            bad.append(
                Violation(
                    f"documents[{i}].text", f"is {len(doc.text)} characters; the limit is {limit}"
                )
            )
        if doc.HasField("first_stage_score") and not math.isfinite(doc.first_stage_score):
            bad.append(
                Violation(
                    f"documents[{i}].first_stage_score",
                    f"must be finite, got {doc.first_stage_score}",
                )
            )


def _deadline_policy(
    request: pb.RerankRequest, settings: ServerSettings, bad: list[Violation]
) -> bool:
    """Whether reasoning is cut at the deadline (the default) or the call fails there."""
    if request.deadline_policy not in DEADLINE_POLICIES:
        unknown = f"unknown DeadlinePolicy {request.deadline_policy}"
        bad.append(Violation("deadline_policy", unknown))
    if request.budget_ms > settings.max_budget_ms:
        bad.append(
            Violation(
                "budget_ms", f"is {request.budget_ms} ms; the limit is {settings.max_budget_ms}"
            )
        )
    cut = request.deadline_policy != pb.DEADLINE_POLICY_FAIL
    if request.finish_in_background and not cut:
        bad.append(Violation("finish_in_background", "only applies to DEADLINE_POLICY_CUT"))
    return cut


def _fusion(request: pb.RerankRequest, bad: list[Violation]) -> tuple[FusionName, int]:
    """The fusion method (zscore when unspecified) and RRF's rank constant."""
    if request.fusion not in FUSION_NAMES:
        bad.append(Violation("fusion", f"unknown Fusion {request.fusion}"))
    fusion = FUSION_NAMES.get(request.fusion, "zscore")
    if not request.HasField("rank_constant"):
        return fusion, DEFAULT_RANK_CONSTANT
    if fusion != "rrf":
        bad.append(Violation("rank_constant", "only applies to FUSION_RRF"))
    elif request.rank_constant < 1:
        bad.append(Violation("rank_constant", "must be at least 1"))
    return fusion, request.rank_constant


def _long_documents(
    request: pb.RerankRequest, truncate_length: int, bad: list[Violation]
) -> tuple[bool, int]:
    """Whether long documents are scored by their best passage, and the passages' overlap.

    The default overlap is an eighth of a passage: enough that a sentence cut at a boundary is
    whole in one of the two passages, cheap enough (about 14 % more passages).
    """
    known = (pb.LONG_DOCUMENTS_UNSPECIFIED, *LONG_DOCUMENTS_ENUMS.values())
    if request.long_documents not in known:
        bad.append(Violation("long_documents", f"unknown LongDocuments {request.long_documents}"))
    best = request.long_documents == pb.LONG_DOCUMENTS_BEST_PASSAGE
    if not request.HasField("passage_overlap"):
        return best, truncate_length // 8 if best else 0
    overlap = request.passage_overlap
    if not best:
        bad.append(Violation("passage_overlap", "only applies to LONG_DOCUMENTS_BEST_PASSAGE"))
    elif overlap >= truncate_length:
        bad.append(
            Violation(
                "passage_overlap",
                f"is {overlap} tokens; it must be below truncate_length ({truncate_length})",
            )
        )
    return best, overlap


def _mode(
    request: pb.RerankRequest, settings: ServerSettings, bad: list[Violation]
) -> tuple[ScoringModeName, int | None]:
    """The scoring mode (server default when unspecified) and, in budget mode, the budget."""
    if request.mode and request.mode not in MODE_NAMES:
        bad.append(Violation("mode", f"unknown ScoringMode {request.mode}"))
    mode = MODE_NAMES.get(request.mode, settings.default_mode)
    if mode != "thinking_budget":
        if request.HasField("thinking_budget"):
            bad.append(Violation("thinking_budget", "only applies to SCORING_MODE_THINKING_BUDGET"))
        return mode, None
    if request.HasField("thinking_budget"):
        return mode, request.thinking_budget
    return mode, settings.default_thinking_budget


def _instruction(request: pb.RerankRequest, settings: ServerSettings, bad: list[Violation]) -> str:
    """The request's instruction, its named preset's text, or the server's default."""
    name = request.instruction_preset
    if not name:
        return request.instruction or settings.default_instruction
    if request.instruction:
        bad.append(Violation("instruction_preset", "give either instruction or a preset, not both"))
    if name not in PRESETS:
        known = ", ".join(PRESETS)
        described = f"unknown preset {preview(name)}; known: {known}"
        bad.append(Violation("instruction_preset", described))
        return ""
    return PRESETS[name]
