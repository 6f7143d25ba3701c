"""``erank eval`` on a hand-made collection (tests/data/eval: 12 documents, 5 queries, graded
judgements, a hand-written run file).

Every measure the command reports (by ir-measures) is checked against the arithmetic written
out here: nDCG@10 with the judgements as gains and log2(rank + 1) discounts over the ideal
order, RR@10 and R@100 counting judgements from a relevance level up, means over every judged
query. The tiny scoring server has random weights, so its order means nothing: the end-to-end
test recomputes the measures of whatever order it returned.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
import pytest_asyncio
from conftest import engine_settings
from typer.testing import CliRunner

from connector.evaluation.beir import document_text, iter_corpus, load_collection
from connector.evaluation.firststage import from_run_file
from connector.evaluation.metrics import evaluate
from connector.evaluation.runner import sweep_alphas
from connector.evaluation.runs import erank_run, hybrid_run
from erank.server import ScoringServer, running_server
from erank_cli.app import app
from erank_cli.demo import demo_model
from erank_contract.v1 import reranker_pb2 as pb

DATA = Path(__file__).parent / "data" / "eval"
Judged = dict[str, int]


def read_qrels(path: Path) -> dict[str, Judged]:
    """The test's own reading of a BEIR qrels tsv."""
    qrels: dict[str, Judged] = {}
    with path.open() as f:
        for row in list(csv.reader(f, delimiter="\t"))[1:]:
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


QRELS = read_qrels(DATA / "qrels" / "test.tsv")


def ndcg10(ranking: list[str], judged: Judged) -> float:
    def dcg(gains: list[int]) -> float:
        return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:10]))

    ideal = dcg(sorted(judged.values(), reverse=True))
    return dcg([judged.get(d, 0) for d in ranking]) / ideal if ideal else 0.0


def rr10(ranking: list[str], judged: Judged, level: int = 1) -> float:
    for i, d in enumerate(ranking[:10]):
        if judged.get(d, 0) >= level:
            return 1.0 / (i + 1)
    return 0.0


def recall100(ranking: list[str], judged: Judged, level: int = 1) -> float:
    relevant = {d for d, g in judged.items() if g >= level}
    return len(relevant & set(ranking[:100])) / len(relevant) if relevant else 0.0


def by_hand(
    qrels: dict[str, Judged], run: dict[str, list[str]], level: int = 1
) -> dict[str, dict[str, float]]:
    """Per judged query: nDCG@10, RR@10, R@100 (a query the run lacks ranks nothing)."""
    rr, r = ("RR@10", "R@100") if level == 1 else (f"RR(rel={level})@10", f"R(rel={level})@100")
    return {
        q: {
            "nDCG@10": ndcg10(run.get(q, []), judged),
            rr: rr10(run.get(q, []), judged, level),
            r: recall100(run.get(q, []), judged, level),
        }
        for q, judged in qrels.items()
    }


def flat(per_query: dict[str, dict[str, float]]) -> dict[tuple[str, str], float]:
    return {(q, m): v for q, values in per_query.items() for m, v in values.items()}


def assert_measured(entry: dict[str, Any], qrels: dict[str, Judged], level: int = 1) -> None:
    """An evaluated ranking of the JSON: its measures are those of its run, by hand."""
    expected = by_hand(qrels, entry["run"], level)
    assert flat(entry["per_query"]) == pytest.approx(flat(expected), abs=1e-12)
    means = {m: fmean(v[m] for v in expected.values()) for m in next(iter(expected.values()))}
    assert entry["mean"] == pytest.approx(means, abs=1e-12)


def test_measures_are_the_textbook_arithmetic() -> None:
    """ir-measures as called by the command, against the formulas above, on random orders of
    the whole corpus (and cut lists, and an absent query), at relevance levels 1 and 2."""
    docs = [doc_id for doc_id, _ in iter_corpus(DATA / "corpus.jsonl")]
    shuffle = random.Random(7).shuffle
    for trial in range(30):
        run = {}
        for q in ("q1", "q2", "q3"):
            order = docs[:]
            shuffle(order)
            run[q] = order[: 1 + trial % len(order)]
        for level in (1, 2):
            scores = evaluate(QRELS, run, level)
            expected = by_hand(QRELS, run, level)
            assert flat(scores.per_query) == pytest.approx(flat(expected), abs=1e-12)
            assert list(scores.mean) == list(expected["q1"])
            assert scores.per_query["q5"] == dict.fromkeys(expected["q5"], 0.0)


def test_collection_reads_beir_and_trec_qrels(tmp_path: Path) -> None:
    """Only judged queries are evaluated; TREC qrels in qrels/<split>.tsv read the same."""
    collection = load_collection(DATA, "test")
    assert list(collection.queries) == ["q1", "q2", "q3", "q5"]  # q4 has no judgements
    assert collection.qrels == QRELS
    shutil.copytree(DATA, tmp_path / "trec")
    with (tmp_path / "trec" / "qrels" / "dl.tsv").open("w") as f:
        for q, judged in QRELS.items():
            f.writelines(f"{q} 0 {d} {g}\n" for d, g in judged.items())
    assert load_collection(tmp_path / "trec", "dl").qrels == QRELS


def test_document_text_is_title_then_text() -> None:
    texts = dict(iter_corpus(DATA / "corpus.jsonl"))
    assert texts["d01"] == (
        "Espresso basics Espresso is brewed by forcing hot water through finely ground "
        "coffee under pressure."
    )
    assert texts["d12"] == "Tomatoes grow best in full sun with regular watering."  # no title
    assert document_text({"title": "T"}) == "T"


def test_run_file_first_stage_keeps_the_top_k_by_score() -> None:
    """Top ``depth`` per judged query by score, equal scores in file order, with texts."""
    candidates = from_run_file(DATA / "bm25.run", load_collection(DATA), depth=4)
    assert set(candidates) == {"q1", "q2", "q3"}  # q4 unjudged, q5 not in the run
    q1 = candidates["q1"]
    assert [c.doc_id for c in q1] == ["d02", "d01", "d03", "d04"]  # d03/d04 tie at 9.0
    assert [c.score for c in q1] == [12.0, 11.0, 9.0, 9.0]
    assert q1[1].text.startswith("Espresso basics Espresso is brewed")


def test_run_file_naming_unknown_documents_fails(tmp_path: Path) -> None:
    (tmp_path / "bad.run").write_text("q1 Q0 nope 1 3.0 x\n")
    with pytest.raises(ValueError, match="not in the corpus"):
        from_run_file(tmp_path / "bad.run", load_collection(DATA), depth=10)


def test_erank_alone_is_rank_score_order_and_hybrid_the_servers_order() -> None:
    """ERank alone sorts by rank_score with ties in first-stage order; hybrid keeps the order
    the server returned, and refuses a response the server did not fuse."""
    scores = [("a", 2.0), ("b", 7.5), ("c", 2.0), ("d", 9.0), ("e", 0.0)]  # first-stage order
    results = [pb.RerankResult(id=d, index=i, rank_score=s) for i, (d, s) in enumerate(scores)]
    served = [results[i] for i in (3, 0, 1, 4, 2)]
    fused = pb.RerankResponse(results=served, ordered_by=pb.ORDERING_HYBRID_SCORE)
    assert erank_run({"q": {0.2: fused}}, 0.2) == {"q": ["d", "b", "a", "c", "e"]}
    assert hybrid_run({"q": {0.2: fused}}, 0.2) == {"q": ["d", "a", "b", "e", "c"]}
    unfused = pb.RerankResponse(results=served, ordered_by=pb.ORDERING_RANK_SCORE, notice="x")
    with pytest.raises(RuntimeError, match="did not fuse"):
        hybrid_run({"q": {0.2: unfused}}, 0.2)


def test_sweep_alphas() -> None:
    assert sweep_alphas(11) == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert sweep_alphas(0) == ()
    with pytest.raises(ValueError):
        sweep_alphas(1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one first stage"),
        (["--run", str(DATA / "bm25.run"), "--engine-url", "http://x:9200"], "exactly one"),
        (["--run", str(DATA / "bm25.run"), "--alpha", "1.5"], "alpha must be in [0, 1]"),
        (["--run", str(DATA / "bm25.run"), "--reranker", "127.0.0.1:1"], "UNAVAILABLE"),
    ],
)
def test_cli_refuses_with_a_message(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad options and an unreachable scoring server: a message on stderr, exit 1, no
    traceback."""
    result = CliRunner().invoke(app, ["eval", str(DATA), "--output", str(tmp_path), *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert_one_error_line(result.stderr)


def assert_one_error_line(stderr: str) -> None:
    """One ``error:`` line, however long (never wrapped at a terminal's width)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine-url", "http://127.0.0.1:1"], "opensearch at http://127.0.0.1:1"),
        (["--run", str(DATA / "bad.run")], "1 documents of"),
    ],
)
async def test_cli_refuses_after_asking_the_server(
    args: list[str], message: str, tiny_server: ScoringServer, tmp_path: Path
) -> None:
    """The scoring server answers, but the engine does not, or the run names documents the
    corpus lacks: a message, exit 1, no traceback."""
    args = [a.replace(str(DATA / "bad.run"), str(tmp_path / "bad.run")) for a in args]
    (tmp_path / "bad.run").write_text("q1 Q0 nope 1 3.0 x\n")
    cli = ["eval", str(DATA), "--output", str(tmp_path), *args]
    cli += ["--reranker", f"127.0.0.1:{tiny_server.port}"]
    result = await asyncio.to_thread(CliRunner().invoke, app, cli)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert_one_error_line(result.stderr)


def hand_first_stage() -> dict[str, list[str]]:
    """The run file's top 100 per judged query, by score, ties in file order (test's reading)."""
    rows = [line.split() for line in (DATA / "bm25.run").read_text().splitlines()]
    run: dict[str, list[tuple[str, float]]] = {}
    for q, _, d, _, score, _ in rows:
        if q in QRELS:
            run.setdefault(q, []).append((d, float(score)))
    return {q: [d for d, _ in sorted(ds, key=lambda x: -x[1])] for q, ds in run.items()}


def assert_server_orders(report: dict[str, Any]) -> None:
    """ERank alone is rank_score order and hybrid is hybrid_score order (ties: first stage),
    read from the server's scores in the JSON; alpha 0 is ERank alone, alpha 1 the first stage;
    the sweep's extra requests were answered from the server's score cache."""
    first, erank, hybrid = report["systems"]
    for q, docs in report["documents"].items():
        position = {d["id"]: i for i, d in enumerate(docs)}
        assert [d["id"] for d in docs] == first["run"][q]
        by_rank = sorted(docs, key=lambda d: (-d["rank_score"], position[d["id"]]))
        by_hybrid = sorted(docs, key=lambda d: (-d["hybrid_score"], position[d["id"]]))
        assert erank["run"][q] == [d["id"] for d in by_rank]
        assert hybrid["run"][q] == [d["id"] for d in by_hybrid]
        assert all(0.0 <= d["rank_score"] <= 10.0 for d in docs)
    sweep = {entry["alpha"]: entry for entry in report["alpha_sweep"]}
    assert sweep[0.0]["run"] == erank["run"]
    assert sweep[1.0]["run"] == first["run"]
    if hybrid["alpha"] in sweep:
        assert sweep[hybrid["alpha"]]["run"] == hybrid["run"]
    assert report["usage"]["sweep_cache_misses"] == 0


async def test_eval_end_to_end_on_a_run_file(tmp_path: Path, tiny_server: ScoringServer) -> None:
    """``erank eval --run`` as a user runs it, against the real tiny scoring server (which,
    with random weights and 256 new tokens, writes no answer: every rank_score is 0)."""
    out = tmp_path / "out"
    args = ["eval", str(DATA), "--run", str(DATA / "bm25.run"), "--output", str(out)]
    args += ["--reranker", f"127.0.0.1:{tiny_server.port}", "--batch-size", "2"]
    args += ["--instruction", "Find passages that answer the question.", "--timeout", "300"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    for label in ("first stage", "ERank", "hybrid (alpha 0.2)", "alpha sweep", "nDCG@10"):
        assert label in result.stdout

    report = json.loads((out / "eval.json").read_text())
    assert list(report) == [
        "collection", "first_stage", "server", "rerank", "measures", "systems", "alpha_sweep",
        "documents", "usage", "seconds",
    ]  # fmt: skip
    assert report["server"]["model"] == str(tiny_server.settings.model)
    assert report["server"]["template_version"]
    assert report["rerank"]["timeout"] == 300.0
    assert report["measures"] == ["nDCG@10", "RR@10", "R@100"]
    assert report["collection"]["queries"] == 4
    assert report["rerank"]["instruction"] == "Find passages that answer the question."
    assert report["rerank"]["truncate_length"] == 2048
    assert [s["name"] for s in report["systems"]] == ["first_stage", "erank", "hybrid"]
    assert [e["alpha"] for e in report["alpha_sweep"]] == list(sweep_alphas(11))
    assert report["systems"][0]["run"] == hand_first_stage()
    assert report["systems"][0]["mean"]["nDCG@10"] == pytest.approx(
        fmean(ndcg10(hand_first_stage().get(q, []), j) for q, j in QRELS.items())
    )
    for entry in [*report["systems"], *report["alpha_sweep"]]:
        assert_measured(entry, QRELS)
        assert entry["per_query"]["q5"] == {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0}
    assert_server_orders(report)
    scores = {
        (q, d["id"]): d["first_stage_score"] for q, ds in report["documents"].items() for d in ds
    }
    assert scores["q1", "d04"] == 9.0 and scores["q3", "d11"] == 0.5
    assert (out / "alpha_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_trec_runs(report, out)


def assert_trec_runs(report: dict[str, Any], out: Path) -> None:
    """Beside eval.json, one TREC run file per ranking evaluated: read as trec_eval reads it (by
    score, highest first), each is its ranking of the JSON, measured the same."""
    names = {"first_stage.run", "erank.run", "hybrid-alpha-0.2.run"}
    names |= {f"hybrid-alpha-{e['alpha']:g}.run" for e in report["alpha_sweep"]}
    assert {p.name for p in out.glob("*.run")} == names
    runs = {name: read_trec_run(out / name) for name in names}
    for entry in [*report["systems"], *report["alpha_sweep"]]:
        name = entry["name"]
        if entry["alpha"] is not None:
            name = f"{name}-alpha-{entry['alpha']:g}"
        run, tags = runs[f"{name}.run"]
        assert tags == {name}
        assert run == entry["run"]
        assert flat(by_hand(QRELS, run)) == pytest.approx(flat(entry["per_query"]), abs=1e-12)


def read_trec_run(path: Path) -> tuple[dict[str, list[str]], set[str]]:
    """``qid Q0 docid rank score tag`` lines: doc ids per query by score, and the tags."""
    scored: dict[str, list[tuple[float, str]]] = {}
    tags = set()
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and int(rank) == len(scored.get(qid, [])) + 1
        scored.setdefault(qid, []).append((float(score), doc))
        tags.add(tag)
    return {q: [d for _, d in sorted(ds, key=lambda x: -x[0])] for q, ds in scored.items()}, tags


@pytest_asyncio.fixture(scope="module")
async def demo_server() -> AsyncIterator[ScoringServer]:
    """``erank demo``'s tiny model: random weights that do write answers, varying by prompt."""
    async with running_server(engine_settings(Path(demo_model()))) as server:
        yield server


async def test_eval_follows_the_servers_scores(tmp_path: Path, demo_server: ScoringServer) -> None:
    """With answers that differ per document, ERank alone and the hybrid reorder the first
    stage exactly as the server's scores say, and every measure is that of the new order."""
    args = ["eval", str(DATA), "--run", str(DATA / "bm25.run"), "--output", str(tmp_path)]
    args += ["--reranker", f"127.0.0.1:{demo_server.port}", "--sweep-points", "5"]
    args += ["--instruction-preset", "beir"]  # the paper's BEIR instruction, by name
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["rerank"]["instruction_preset"] == "beir"
    first, erank, _ = report["systems"]
    assert erank["run"] != first["run"]
    assert {d["status"] for ds in report["documents"].values() for d in ds} == {"RESULT_STATUS_OK"}
    for entry in [*report["systems"], *report["alpha_sweep"]]:
        assert_measured(entry, QRELS)
    assert_server_orders(report)
