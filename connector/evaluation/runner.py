"""``erank eval`` as one function: collection → first stage → ERank → measures → files.

Three rankings of the same candidates are evaluated: the first stage, ERank alone (rank_score
order) and the server's hybrid fusion at ``alpha``; then the hybrid at every alpha of the sweep.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from connector.evaluation import engine, report
from connector.evaluation.beir import Collection, load_collection
from connector.evaluation.firststage import Candidates, from_run_file
from connector.evaluation.metrics import evaluate, measures
from connector.evaluation.rerank import RerankOptions, Responses, rerank_all, usage
from connector.evaluation.runs import erank_run, first_stage_run, hybrid_run
from erank_contract.client import AsyncRerankerClient
from erank_contract.security import ClientSecurity
from erank_contract.v1 import reranker_pb2 as pb


def sweep_alphas(points: int) -> tuple[float, ...]:
    """``points`` evenly spaced alphas from 0 to 1 (11: 0, 0.1, …, 1); 0 points: no sweep."""
    if points == 0:
        return ()
    if points < 2:
        raise ValueError("an alpha sweep needs at least 2 points (0 turns it off)")
    return tuple(round(float(a), 10) for a in np.linspace(0.0, 1.0, points))


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation. The first stage is ``run_file`` or, when ``engine_url`` is set, a BM25
    index built in that engine."""

    collection: Path
    output: Path
    split: str = "test"
    run_file: Path | None = None
    engine_url: str | None = None
    engine: engine.EngineKind = "opensearch"
    index: str = "erank-eval"
    rebuild_index: bool = False
    depth: int = 100
    reranker: str = "127.0.0.1:50051"
    security: ClientSecurity = field(default_factory=ClientSecurity)  # TLS, token
    rerank: RerankOptions = field(default_factory=RerankOptions)
    relevance_level: int = 1

    def __post_init__(self) -> None:
        if (self.run_file is None) == (self.engine_url is None):
            raise ValueError("give exactly one first stage: a run file or an engine URL")
        if self.depth < 1 or self.rerank.batch_size < 1:
            raise ValueError("depth and batch size must be at least 1")
        if not all(0.0 <= a <= 1.0 for a in self.rerank.alphas):
            raise ValueError("alpha must be in [0, 1]")


def first_stage(config: EvalConfig, collection: Collection, console: Console) -> Candidates:
    if config.run_file is not None:
        return from_run_file(config.run_file, collection, config.depth, console)
    assert config.engine_url is not None
    client = engine.connect(config.engine, config.engine_url)
    try:
        if engine.build_index(
            client,
            config.engine,
            config.index,
            collection.corpus_path,
            config.rebuild_index,
            console,
        ):
            console.print(f"indexed {collection.corpus_path} into {config.index}")
        return engine.bm25_candidates(client, config.index, collection, config.depth, console)
    finally:
        client.close()


def _documents(responses: Responses, alpha: float) -> dict[str, list[dict[str, Any]]]:
    """The server's scores per query at ``alpha``, in first-stage order."""
    status = pb.ResultStatus.Name
    return {
        qid: [
            {
                "id": r.id,
                "first_stage_score": r.first_stage_score,
                "rank_score": r.rank_score,
                "answer": r.answer,
                "answer_probability": r.answer_probability,
                "hybrid_score": r.hybrid_score,
                "status": status(r.status),
            }
            for r in sorted(answers[alpha].results, key=lambda r: r.index)
        ]
        for qid, answers in responses.items()
    }


async def run_eval(config: EvalConfig, console: Console) -> dict[str, Any]:
    """Run the evaluation, write ``eval.json`` (and the sweep plot) under ``config.output``,
    and return the JSON document."""
    collection = load_collection(config.collection, config.split)
    options = config.rerank
    async with AsyncRerankerClient(
        config.reranker, timeout=options.timeout, security=config.security
    ) as client:
        # Ask the server first: a refusal should come before a long indexing run, not after.
        info = await client.model_info()
        if config.depth > info.max_documents:
            raise ValueError(f"depth {config.depth} > the server's max_documents")
        began = time.monotonic()
        candidates = await asyncio.to_thread(first_stage, config, collection, console)
        first_stage_s = time.monotonic() - began
        began = time.monotonic()
        responses = await rerank_all(client, collection.queries, candidates, options, console)
        rerank_s = time.monotonic() - began

    def scored(name: str, alpha: float | None, run: dict[str, list[str]]) -> dict[str, Any]:
        scores = evaluate(collection.qrels, run, config.relevance_level)
        return report.system(name, alpha, run, scores)

    first = first_stage_run(candidates)
    out: dict[str, Any] = {
        "collection": {
            "name": collection.root.resolve().name,
            "path": str(collection.root),
            "split": collection.split,
            "queries": len(collection.queries),
        },
        "first_stage": {
            "source": "run file" if config.run_file else config.engine,
            "run_file": str(config.run_file) if config.run_file else None,
            "engine_url": config.engine_url,
            "index": None if config.run_file else config.index,
            "depth": config.depth,
        },
        "server": {
            "address": config.reranker,
            "model": info.model,
            "revision": info.revision,
            "template_version": info.template_version,
            "default_instruction": info.default_instruction,
        },
        "rerank": {k: v for k, v in asdict(options).items() if k != "sweep"},
        "measures": [str(m) for m in measures(config.relevance_level)],
        "systems": [
            scored("first_stage", None, first),
            scored("erank", None, erank_run(responses, options.alpha)),
            scored("hybrid", options.alpha, hybrid_run(responses, options.alpha)),
        ],
        "alpha_sweep": [
            scored("hybrid", a, hybrid_run(responses, a)) for a in sorted(options.sweep)
        ],
        "documents": _documents(responses, options.alpha),
        "usage": usage(responses),
        "seconds": {"first_stage": round(first_stage_s, 3), "rerank": round(rerank_s, 3)},
    }
    written = report.write(out, config.output)
    runs = [path.name for path in written if path.suffix == report.RUN_SUFFIX]
    for path in written:
        if path.suffix != report.RUN_SUFFIX:
            console.print(f"wrote {path}")
    console.print(f"wrote {len(runs)} TREC run files in {config.output}: {', '.join(runs)}")
    return out
