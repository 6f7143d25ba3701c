"""``erank workbench``'s JSON API against a real OpenSearch and the real scoring server (``erank
demo``'s tiny model on vLLM's CPU engine: its scores mean nothing, so behaviour is asserted).

What only a browser shows (rendering, the slider's re-fusion, keys) is in
test_workbench_browser.py; here: indices from mappings, both columns, the server's fused order
against the REST front's ``/v1/rerank``, errors naming the field, judgments on disk as TREC
qrels in BEIR layout, ``erank eval``'s numbers, the token, and failing open.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import ir_measures
import pytest
import pytest_asyncio
from engines import ELASTICSEARCH_VERSIONS, EnginePool, RunningEngine, free_port
from workbench_setup import (  # noqa: F401  the *_fixture names: fixtures of this module
    BUDGET_MS,
    DOCS,
    INDEX,
    QUERY,
    VECTORS,
    demo_rest_url_fixture,
    demo_server_fixture,
    engine_ids,
    index_corpus,
    index_vectors,
    workbench,
)

from connector.workbench.workspace import Judgment, Workspace
from erank.server import ScoringServer

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def engine(engine_pool: EnginePool) -> RunningEngine:
    return index_corpus(engine_pool)


@pytest_asyncio.fixture(scope="module")
async def base(
    engine: RunningEngine, demo_server: ScoringServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    workspace = tmp_path_factory.mktemp("workbench")
    async with workbench(engine, f"127.0.0.1:{demo_server.port}", workspace) as url:
        yield url


@pytest_asyncio.fixture
async def http(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        yield client


def ask(**changes: Any) -> dict[str, Any]:
    return {"index": INDEX, "field": "text", "query": QUERY, "window": 8,
            "budget_ms": BUDGET_MS} | changes  # fmt: skip


async def test_indices_and_their_fields_come_from_the_mappings(http: httpx.AsyncClient) -> None:
    found = {i["name"]: i for i in (await http.get("/api/indices")).json()["indices"]}
    assert found[INDEX]["text_fields"] == ["text", "title"]  # keyword and title.raw left out
    assert found[INDEX]["vector_fields"] == []


async def test_compare_gives_both_columns_and_the_servers_fusion(
    http: httpx.AsyncClient, engine: RunningEngine, demo_rest_url: str
) -> None:
    answer = (await http.post("/api/compare", json=ask(alpha=0.3))).json()
    first = [r["id"] for r in answer["first_stage"]]
    assert first == engine_ids(engine, "text", QUERY, 8)
    assert answer["erank"]["status"] == "reranked"
    rows = answer["reranked"]
    assert sorted(r["id"] for r in rows) == sorted(first)
    for row in rows:
        assert first[row["first_stage_rank"] - 1] == row["id"]
        assert {"rank_score", "hybrid_score", "answer", "answer_probability", "reasoning"} <= set(
            row
        )
    # the same documents through the REST front at the same alpha: the same fused order
    by_rank = sorted(rows, key=lambda r: r["first_stage_rank"])
    async with httpx.AsyncClient(timeout=300) as rest:
        body = {
            "query": QUERY,
            "documents": [DOCS[r["id"]]["text"] for r in by_rank],
            "first_stage_scores": [r["first_stage_score"] for r in by_rank],
            "alpha": 0.3,
        }
        fused = (await rest.post(f"{demo_rest_url}/v1/rerank", json=body)).json()["results"]
    assert [by_rank[r["index"]]["id"] for r in fused] == [r["id"] for r in rows]
    assert [r["hybrid_score"] for r in fused] == [r["hybrid_score"] for r in rows]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"window": 0}, "window"),
        ({"alpha": 1.5}, "alpha"),
        ({"fusion": "max"}, "fusion"),
        ({"query": ""}, "query"),
        ({"instruction_preset": "nope"}, "instruction_preset"),
        ({"colour": "red"}, "colour"),
        ({"index": "a/b"}, "index"),
    ],
)
async def test_bad_compare_fields_are_named(
    http: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    response = await http.post("/api/compare", json=ask(**changes))
    assert response.status_code == 400
    assert [v["field"] for v in response.json()["error"]["violations"]] == [field]


async def test_engine_refusal_and_non_json_bodies_are_json_errors(http: httpx.AsyncClient) -> None:
    missing = await http.post("/api/compare", json=ask(index="no-such-index"))
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "engine_error"
    garbage = await http.post("/api/compare", content=b"{not json")
    assert garbage.status_code == 400 and garbage.json()["error"]["type"] == "parse_exception"
    unknown = await http.get("/api/nothing")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "http_error"
    bare = await http.get("/api/judgments", params={"index": INDEX})
    assert {v["field"] for v in bare.json()["error"]["violations"]} == {"field", "query"}


async def test_judgments_persist_as_trec_qrels_in_beir_layout(
    http: httpx.AsyncClient, base: str, tmp_path: Path
) -> None:
    info = (await http.get("/api/info")).json()
    root = Path(info["workspace"])
    grades = {"d1": 3, "d2": 2, "d7": 0}
    for doc, grade in grades.items():
        body = {"index": INDEX, "field": "title", "query": "fox", "doc_id": doc, "grade": grade}
        assert (await http.put("/api/judgments", json=body)).status_code == 200
    drop = {"index": INDEX, "field": "title", "query": "fox", "doc_id": "d7", "grade": None}
    answer = (await http.put("/api/judgments", json=drop)).json()
    assert answer["grades"] == {"d1": 3, "d2": 2}
    bad = await http.put("/api/judgments", json=drop | {"grade": 4})
    assert [v["field"] for v in bad.json()["error"]["violations"]] == ["grade"]
    spaced = await http.put("/api/judgments", json=drop | {"doc_id": "a b", "grade": 1})
    assert [v["field"] for v in spaced.json()["error"]["violations"]] == ["doc_id"]
    qid = answer["qid"]
    on_disk = {(q.query_id, q.doc_id): q.relevance for q in
               ir_measures.read_trec_qrels(str(root / "qrels" / "test.tsv"))}  # fmt: skip
    assert {(qid, "d1"): 3, (qid, "d2"): 2}.items() <= on_disk.items()
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()]
    assert {"_id": qid, "text": "fox", "metadata": {"index": INDEX, "field": "title"}} in queries
    assert Workspace(root).find(INDEX, "title", "fox").grades == {"d1": 3, "d2": 2}  # type: ignore[union-attr]
    export = await http.get("/api/qrels")
    assert f"{qid} 0 d1 3\n" in export.text


async def test_evaluation_is_erank_evals_own_numbers(
    http: httpx.AsyncClient, demo_server: ScoringServer, tmp_path: Path
) -> None:
    info = (await http.get("/api/info")).json()
    root = Path(info["workspace"])
    for doc, grade in {"d2": 3, "d4": 1, "d6": 2}.items():
        judgment = Judgment(index=INDEX, field="text", query=QUERY, doc_id=doc, grade=grade)
        await http.put("/api/judgments", json=judgment.model_dump())
    view = (await http.post("/api/evaluate", json={"depth": 8, "sweep_points": 3})).json()
    assert [s["alpha"] for s in view["sweep"]] == [0.0, 0.5, 1.0]
    assert (await http.get("/api/evaluation")).json() == view
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "erank_cli", "eval", str(root), "--run",
               str(root / "runs" / "first_stage.trec"), "--depth", "8", "--sweep-points", "3",
               "--reranker", f"127.0.0.1:{demo_server.port}", "--output", str(out)]  # fmt: skip
    # in a thread: the scoring server the command calls runs on this test's event loop
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, timeout=600)
    cli = json.loads((out / "eval.json").read_text())
    for system in cli["systems"]:
        for qid, values in system["per_query"].items():
            row = next(r for r in view["queries"] if r["qid"] == qid)
            assert row[system["name"]] == values["nDCG@10"]
    assert len(view["queries"]) == len(cli["systems"][0]["per_query"])
    empty = await http.get("/api/evaluation", params={"folder": str(tmp_path / "none")})
    assert empty.status_code == 404


async def test_token_guards_the_api_not_the_page(
    engine: RunningEngine, demo_server: ScoringServer, tmp_path: Path
) -> None:
    async with (
        workbench(engine, f"127.0.0.1:{demo_server.port}", tmp_path, token="s3cret") as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/static/app.js")).status_code == 200
        refused = await client.get("/api/indices")
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "security_exception"
        ok = await client.get("/api/indices", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


async def test_unreachable_scoring_server_fails_open_with_the_engines_order(
    engine: RunningEngine, tmp_path: Path
) -> None:
    async with (
        workbench(engine, f"127.0.0.1:{free_port()}", tmp_path) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as client,
    ):
        answer = (await client.post("/api/compare", json=ask())).json()
    assert answer["erank"]["status"] == "failed"
    assert answer["erank"]["error"]["type"] == "connection_error"
    ids = [r["id"] for r in answer["first_stage"]]
    assert [r["id"] for r in answer["reranked"]] == ids == engine_ids(engine, "text", QUERY, 8)


def test_the_command_takes_the_issues_flags() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "erank_cli", "workbench", "--help"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    ).stdout
    for flag in ("--engine", "--reranker", "--port", "--host", "--workspace", "--token"):
        assert flag in help_text
    assert "8090" in help_text and "127.0.0.1" in help_text


async def test_elasticsearch_too(
    engine_pool: EnginePool, demo_server: ScoringServer, tmp_path: Path
) -> None:
    """The same indices, columns and fusion on Elasticsearch (the newest pinned)."""
    elastic = index_corpus(engine_pool, "elasticsearch", ELASTICSEARCH_VERSIONS[-1])
    async with (
        workbench(elastic, f"127.0.0.1:{demo_server.port}", tmp_path) as url,
        httpx.AsyncClient(base_url=url, timeout=300) as client,
    ):
        found = {i["name"]: i for i in (await client.get("/api/indices")).json()["indices"]}
        assert found[INDEX]["text_fields"] == ["text", "title"]
        answer = (await client.post("/api/compare", json=ask())).json()
    assert answer["erank"]["status"] == "reranked"
    first = [r["id"] for r in answer["first_stage"]]
    assert first == engine_ids(elastic, "text", QUERY, 8)
    assert sorted(r["id"] for r in answer["reranked"]) == sorted(first)


async def test_knn_and_hybrid_first_stages_on_elasticsearch(
    engine_pool: EnginePool, demo_server: ScoringServer, tmp_path: Path
) -> None:
    elastic = index_corpus(engine_pool, "elasticsearch", ELASTICSEARCH_VERSIONS[-1])
    index_vectors(elastic)
    vector = [0.3, -0.2, 0.9]
    knn = {"field": "vec", "query_vector": vector, "k": 5, "num_candidates": 100}
    async with (
        workbench(elastic, f"127.0.0.1:{demo_server.port}", tmp_path) as url,
        httpx.AsyncClient(base_url=url, timeout=300) as client,
    ):
        found = {i["name"]: i for i in (await client.get("/api/indices")).json()["indices"]}
        assert found[VECTORS]["vector_fields"] == ["vec"]
        for kind, body in (("knn", {"knn": knn}), ("hybrid", {"knn": knn, "query": {
                "match": {"text": QUERY}}})):  # fmt: skip
            asked = ask(index=VECTORS, window=5, first_stage=kind, vector_field="vec",
                        query_vector=vector)  # fmt: skip
            answer = (await client.post("/api/compare", json=asked)).json()
            direct = elastic.request("POST", f"/{VECTORS}/_search", {**body, "size": 5})
            assert [r["id"] for r in answer["first_stage"]] == [
                h["_id"] for h in direct["hits"]["hits"]
            ]
            assert answer["erank"]["status"] == "reranked", kind
        missing = await client.post("/api/compare", json=ask(first_stage="knn"))
        assert [v["field"] for v in missing.json()["error"]["violations"]] == ["query_vector"]
