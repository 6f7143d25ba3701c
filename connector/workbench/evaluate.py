"""Evaluate: ``erank eval`` itself (:func:`connector.evaluation.runner.run_eval`) on the
workspace's judged queries, and the per-query view of its ``eval.json``.

The workspace is already a BEIR collection but for its corpus; evaluating writes the first stage
of every judged query (the engine's top ``depth`` for the query's own index and field, BM25
``match``, as Compare searches) as a TREC run, ``runs/first_stage.trec``, and the texts of those
hits as ``corpus.jsonl``, then runs the evaluation with that run file into ``eval/``: the same
files ``erank eval <workspace> --run <workspace>/runs/first_stage.trec --output <workspace>/eval``
writes, and the same numbers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.rewrite.config import PresetName
from connector.rewrite.hits import hit_text, hits_of
from connector.workbench.engine import Engine
from connector.workbench.workspace import QUERIES_NAME, SPLIT, Workspace
from erank_contract.security import ClientSecurity

RUN_PATH = Path("runs") / "first_stage.trec"
OUTPUT_NAME = "eval"
MEASURE = "nDCG@10"


class NothingJudged(ValueError):
    """The workspace has no judged query to evaluate."""


class EvaluateRequest(BaseModel):
    """``POST /api/evaluate``'s body (the ``erank eval`` options that apply here)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    depth: int = Field(default=20, ge=1, le=1000)
    alpha: float = Field(default=0.2, ge=0, le=1)
    sweep_points: int = Field(default=11, ge=0, le=101)
    instruction_preset: PresetName | None = None
    timeout_s: float = Field(default=600.0, gt=0, le=3600)

    @field_validator("sweep_points")
    @classmethod
    def _sweep(cls, points: int) -> int:
        if points == 1:
            raise ValueError("an alpha sweep needs at least 2 points (0 turns it off)")
        return points


async def write_first_stage(workspace: Workspace, engine: Engine, depth: int) -> Path:
    """The run file and corpus of the judged queries; returns the run file's path."""
    run: list[str] = []
    corpus: dict[str, str] = {}
    for query in workspace.judged():
        body = {"query": {"match": {query.field: query.text}}, "size": depth}
        answer, _ = await engine.search(query.index, body)
        for rank, hit in enumerate(hits_of(answer) or [], start=1):
            doc = str(hit["_id"])
            corpus.setdefault(doc, hit_text(hit, [query.field]) or "")
            run.append(f"{query.qid} Q0 {doc} {rank} {float(hit['_score'])!r} workbench\n")
    path = workspace.root / RUN_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(run), encoding="utf-8")
    lines = (
        json.dumps({"_id": d, "text": t}, ensure_ascii=False) + "\n" for d, t in corpus.items()
    )
    (workspace.root / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    return path


async def evaluate(
    workspace: Workspace,
    engine: Engine,
    reranker: str,
    security: ClientSecurity,
    ask: EvaluateRequest,
) -> dict[str, Any]:
    """Run ``erank eval`` on the judged queries; the view of its ``eval.json``."""
    from rich.console import Console

    from connector.evaluation.rerank import RerankOptions
    from connector.evaluation.runner import EvalConfig, run_eval, sweep_alphas

    if not workspace.judged():
        raise NothingJudged("no judged query yet: grade a hit (0-3) in Compare first")
    run_file = await write_first_stage(workspace, engine, ask.depth)
    config = EvalConfig(
        collection=workspace.root,
        output=workspace.root / OUTPUT_NAME,
        split=SPLIT,
        run_file=run_file,
        depth=ask.depth,
        reranker=reranker,
        security=security,
        rerank=RerankOptions(
            instruction_preset=ask.instruction_preset or "",
            alpha=ask.alpha,
            sweep=sweep_alphas(ask.sweep_points),
            timeout=ask.timeout_s,
        ),
    )
    report = await run_eval(config, Console(file=io.StringIO()))
    return view(report, workspace.root / OUTPUT_NAME)


def _queries(collection: Path) -> dict[str, dict[str, Any]]:
    path = collection / QUERIES_NAME
    if not path.exists():
        return {}
    raw = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {str(q["_id"]): q for q in raw}


def view(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Per query nDCG@10 of the first stage, ERank alone and the hybrid (with its gain over the
    first stage), their means, and the hybrid's mean at every alpha of the sweep."""
    systems = {s["name"]: s for s in report["systems"]}
    queries = _queries(Path(report["collection"]["path"]))
    rows = []
    for qid in systems["first_stage"]["per_query"]:
        values = {name: systems[name]["per_query"][qid][MEASURE] for name in systems}
        meta = queries.get(qid, {})
        rows.append(
            {
                "qid": qid,
                "query": meta.get("text", ""),
                **{k: (meta.get("metadata") or {}).get(k) for k in ("index", "field")},
                **values,
                "gain": values["hybrid"] - values["first_stage"],
            }
        )
    return {
        "folder": str(folder),
        "measure": MEASURE,
        "alpha": systems["hybrid"]["alpha"],
        "mean": {name: systems[name]["mean"][MEASURE] for name in systems},
        "queries": rows,
        "sweep": [
            {"alpha": s["alpha"], "value": s["mean"][MEASURE]} for s in report["alpha_sweep"]
        ],
    }


def load_view(folder: Path) -> dict[str, Any] | None:
    """The view of an earlier run's ``eval.json`` in ``folder``; None when it has none."""
    from connector.evaluation.report import JSON_NAME

    path = folder / JSON_NAME
    if not path.is_file():
        return None
    return view(json.loads(path.read_text(encoding="utf-8")), folder)
