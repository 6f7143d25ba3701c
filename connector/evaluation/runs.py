"""The rankings that get evaluated, each a list of doc ids per query, best first.

An order is evaluated exactly as it would be shown: :func:`as_scored` gives ir-measures
strictly decreasing scores by position, so ties are broken the way the server breaks them
(first-stage order), not by doc id as trec_eval would.
"""

from __future__ import annotations

from connector.evaluation.firststage import Candidates
from connector.evaluation.rerank import Responses
from erank_contract.vocabulary import fused

Run = dict[str, list[str]]  # query id -> doc ids, best first


def first_stage_run(candidates: Candidates) -> Run:
    return {qid: [c.doc_id for c in docs] for qid, docs in candidates.items()}


def erank_run(responses: Responses, alpha: float) -> Run:
    """ERank alone: by ``rank_score``, ties in first-stage order (the server's own rule when
    nothing is fused)."""
    return {
        qid: [r.id for r in sorted(answers[alpha].results, key=lambda r: (-r.rank_score, r.index))]
        for qid, answers in responses.items()
    }


def hybrid_run(responses: Responses, alpha: float) -> Run:
    """The server's order at ``alpha``: by ``hybrid_score``."""
    run: Run = {}
    for qid, answers in responses.items():
        response = answers[alpha]
        if not fused(response):
            raise RuntimeError(f"query {qid}: the server did not fuse ({response.notice})")
        run[qid] = [r.id for r in response.results]
    return run


def as_scored(run: Run) -> dict[str, dict[str, float]]:
    """ir-measures' run form; scores n, n-1, …, 1 keep the given order."""
    return {qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs in run.items()}
