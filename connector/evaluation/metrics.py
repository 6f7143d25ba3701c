"""nDCG@10, RR@10 and R@100, per query and mean, computed by ir-measures.

nDCG uses the graded judgements as gains (trec_eval's ``ndcg_cut``); RR and R count a document
as relevant from ``relevance_level`` up (TREC DL passage results use 2). A judged query that
has no ranked document scores 0 and counts in the mean, like ``trec_eval -c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import ir_measures
from ir_measures import RR, R, nDCG

from connector.evaluation.beir import Qrels
from connector.evaluation.runs import Run, as_scored


@dataclass(frozen=True)
class Scores:
    mean: dict[str, float]  # measure name (as ir-measures writes it) -> mean over judged queries
    per_query: dict[str, dict[str, float]]  # query id -> measure name -> value


def measures(relevance_level: int = 1) -> list[ir_measures.Measure]:
    return [nDCG @ 10, RR(rel=relevance_level) @ 10, R(rel=relevance_level) @ 100]


def evaluate(qrels: Qrels, run: Run, relevance_level: int = 1) -> Scores:
    """Every judged query of ``qrels`` scored on ``run``'s order."""
    wanted = measures(relevance_level)
    result = ir_measures.calc(wanted, qrels, as_scored(run))
    means = result.aggregated
    assert isinstance(means, dict)  # a single value only when one measure (not a list) is asked
    values = {(m.query_id, m.measure): float(m.value) for m in result.per_query}
    return Scores(
        mean={str(m): float(means[m]) for m in wanted},
        per_query={qid: {str(m): values[qid, m] for m in wanted} for qid in qrels},
    )
