"""``erank eval --engine-url``: the hand-made collection indexed into a real OpenSearch and a real
Elasticsearch (newest pinned versions) through their official clients, BM25 top-k as the first
stage, reranked by the real tiny scoring server.

The first stage the command reports is compared with the engine's own answer to the same BM25
query, asked here over plain HTTP, and every measure is recomputed by the arithmetic of
``test_eval``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from engines import ELASTICSEARCH_VERSIONS, OPENSEARCH_VERSIONS, RunningEngine, engines_fixture
from test_eval import DATA, QRELS, assert_measured, assert_server_orders
from typer.testing import CliRunner

from erank.server import ScoringServer
from erank_cli.app import app

pytestmark = pytest.mark.engine
engine = engines_fixture(
    [("opensearch", OPENSEARCH_VERSIONS[-1]), ("elasticsearch", ELASTICSEARCH_VERSIONS[-1])],
    scope="module",
)
DEPTH = 3
QUERIES = {
    json.loads(line)["_id"]: json.loads(line)["text"]
    for line in (DATA / "queries.jsonl").read_text().splitlines()
}


async def run_eval(
    engine: RunningEngine, server: ScoringServer, out: Path, *extra: str
) -> tuple[int, str, str]:
    args = ["eval", str(DATA), "--engine-url", engine.url, "--engine", engine.kind]
    args += ["--index", "beir", "--depth", str(DEPTH), "--sweep-points", "3"]
    args += ["--reranker", f"127.0.0.1:{server.port}", "--output", str(out), *extra]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    return result.exit_code, result.stdout, result.stderr


def engine_bm25(engine: RunningEngine, query: str) -> list[tuple[str, float]]:
    body = {"query": {"match": {"contents": query}}, "size": DEPTH}
    hits = engine.request("POST", "/beir/_search", body)["hits"]["hits"]
    return [(h["_id"], h["_score"]) for h in hits]


async def test_eval_on_a_bm25_index(
    engine: RunningEngine, tiny_server: ScoringServer, tmp_path: Path
) -> None:
    """Builds the index (title + text in one field), takes the engine's BM25 top-k with its
    _score as first-stage score, and measures first stage, ERank and hybrid correctly."""
    code, stdout, stderr = await run_eval(engine, tiny_server, tmp_path / "first")
    assert code == 0, stdout + stderr
    assert "indexed" in stdout and "hybrid (alpha 0.2)" in stdout
    assert engine.request("GET", "/beir/_count")["count"] == 12
    doc = engine.request("GET", "/beir/_doc/d12")["_source"]
    assert doc == {"contents": "Tomatoes grow best in full sun with regular watering."}
    mapping = engine.request("GET", "/beir/_mapping")["beir"]["mappings"]["properties"]
    assert mapping == {"contents": {"type": "text", "analyzer": "standard"}}
    settings = engine.request("GET", "/beir/_settings")["beir"]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("1", "0")

    report: dict[str, Any] = json.loads((tmp_path / "first" / "eval.json").read_text())
    assert report["first_stage"]["source"] == engine.kind
    judged = [q for q in QUERIES if q in QRELS]
    expected = {q: engine_bm25(engine, QUERIES[q]) for q in judged}
    first = report["systems"][0]
    assert first["run"] == {q: [d for d, _ in hits] for q, hits in expected.items() if hits}
    for q, docs in report["documents"].items():
        assert [d["id"] for d in docs] == [d for d, _ in expected[q]]
        assert [d["first_stage_score"] for d in docs] == pytest.approx([s for _, s in expected[q]])
    for entry in [*report["systems"], *report["alpha_sweep"]]:
        assert_measured(entry, QRELS)
    assert [e["alpha"] for e in report["alpha_sweep"]] == [0.0, 0.5, 1.0]
    assert_server_orders(report)

    assert (tmp_path / "first" / "alpha_sweep.png").is_file()

    # A second run reuses the index: same first stage, nothing indexed again; no sweep, no plot.
    code, stdout, stderr = await run_eval(
        engine, tiny_server, tmp_path / "again", "--sweep-points", "0"
    )
    assert code == 0, stdout + stderr
    assert "indexed" not in stdout and "alpha sweep" not in stdout
    again = json.loads((tmp_path / "again" / "eval.json").read_text())
    assert again["systems"][0]["run"] == first["run"]
    assert again["alpha_sweep"] == []
    assert not (tmp_path / "again" / "alpha_sweep.png").exists()


async def test_an_index_of_another_size_is_not_reused(
    engine: RunningEngine, tiny_server: ScoringServer, tmp_path: Path
) -> None:
    """An index holding something else is refused, and replaced with --rebuild-index."""
    engine.request("DELETE", "/beir", expect_error=True)
    engine.request("PUT", "/beir/_doc/x?refresh=true", {"contents": "another collection"})
    code, _, stderr = await run_eval(engine, tiny_server, tmp_path / "refused")
    assert code == 1
    assert "holds 1 documents, the corpus 12" in stderr
    code, stdout, stderr = await run_eval(
        engine, tiny_server, tmp_path / "rebuilt", "--rebuild-index"
    )
    assert code == 0, stdout + stderr
    assert engine.request("GET", "/beir/_count")["count"] == 12
