"""``erank workbench`` in a real browser: Debian's Chromium driven by Playwright for Python,
against a real OpenSearch and the real scoring server (``erank demo``'s tiny model on vLLM's
CPU engine).

Covers what only a browser shows: both columns and their movements after typing a query, the
alpha slider's and the fusion menu's re-fusion against the REST front's ``/v1/rerank``, the JS
fusion bit for bit against erank/fusion.py, reasons opening, grading with the keyboard and
reloading, the evaluation view against ``erank eval``, the failed-open banner after the scoring
server is stopped, labels and Tab reachability. Writes docs/workbench.png and prints the page's
load time and the time from query to both columns.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import ir_measures
import pytest
import pytest_asyncio
from conftest import engine_settings
from engines import ELASTICSEARCH_VERSIONS, EnginePool, RunningEngine, free_port
from playwright.async_api import BrowserContext, Page, async_playwright
from workbench_pages import UNNAMED, WINDOW, column, open_page, rest_order, search, tab_stops
from workbench_setup import (  # noqa: F401  the *_fixture names: fixtures of this module
    BUDGET_MS,
    CHROMIUM_ARGS,
    DOCS,
    INDEX,
    QUERY,
    VECTORS,
    chromium,
    demo_checkpoint,
    demo_rest_url_fixture,
    demo_server_fixture,
    engine_ids,
    index_corpus,
    index_vectors,
    workbench,
)

from erank.fusion import hybrid_scores
from erank.server import ScoringServer, running_server

pytestmark = pytest.mark.engine
SCREENSHOT = Path(__file__).parent.parent / "docs" / "workbench.png"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def engine(engine_pool: EnginePool) -> RunningEngine:
    return index_corpus(engine_pool)


@pytest_asyncio.fixture(scope="module")
async def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workbench")


@pytest_asyncio.fixture(scope="module")
async def base(
    engine: RunningEngine, demo_server: ScoringServer, workspace: Path
) -> AsyncIterator[str]:
    async with workbench(engine, f"127.0.0.1:{demo_server.port}", workspace) as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """Chromium with a fresh profile, headless, no network beyond loopback needed."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium(),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        await context.close()


@pytest_asyncio.fixture
async def page(browser: BrowserContext, base: str) -> AsyncIterator[Page]:
    page = await browser.new_page()
    await open_page(page, base)
    yield page
    await page.close()


async def test_query_renders_both_columns_with_movements(page: Page, engine: RunningEngine) -> None:
    TIMINGS["page_ready_ms"] = await page.evaluate("window.__workbench.timings.ready_ms")
    await search(page, "fox in the forest")  # a query no test scored before: the model works
    TIMINGS["query_to_both_columns_cold_ms"] = await page.evaluate(
        "window.__workbench.timings.query_ms"
    )
    await search(page, "fox in the forest")  # the same again: from the server's score cache
    TIMINGS["query_to_both_columns_cached_ms"] = await page.evaluate(
        "window.__workbench.timings.query_ms"
    )
    result = await search(page)
    assert await column(page, "first-stage") == engine_ids(engine, "text", QUERY, WINDOW)
    assert await column(page, "fused") == [r["id"] for r in result["reranked"]]
    assert result["erank"]["status"] == "reranked"
    assert await page.is_hidden("#banner")
    moves = await page.eval_on_selector_all("#fused .move", "m => m.map(e => e.textContent)")
    expected = []
    for rank, row in enumerate(result["reranked"], start=1):
        moved = row["first_stage_rank"] - rank
        expected.append("=" if moved == 0 else f"↑{moved}" if moved > 0 else f"↓{-moved}")
    assert moves == expected
    await page.fill("#shown", "3")  # fewer shown: a hit from below the first stage's top is new
    await page.dispatch_event("#shown", "change")
    news = [r for r in result["reranked"][:3] if r["first_stage_rank"] > 3]
    texts = await page.eval_on_selector_all("#fused .move", "m => m.map(e => e.textContent)")
    assert texts.count("new") == len(news)


async def test_slider_and_fusion_menu_refuse_to_the_servers_order(
    page: Page, demo_rest_url: str
) -> None:
    result = await search(page)
    assert len({r["rank_score"] for r in result["reranked"]}) > 1  # the model tells hits apart
    orders = {tuple(await column(page, "fused"))}
    await page.focus("#alpha")
    for _ in range(10):  # 0.2 -> 0.7 by keyboard, one 0.05 step at a time
        await page.keyboard.press("ArrowRight")
    alpha = float(await page.input_value("#alpha"))
    assert alpha == pytest.approx(0.7)
    for fusion in ("zscore", "minmax", "rrf"):
        await page.select_option("#fusion", fusion)
        shown = await column(page, "fused")
        assert shown == await rest_order(demo_rest_url, result, alpha, fusion)
        orders.add(tuple(shown))
    await page.select_option("#fusion", "zscore")
    await page.fill("#alpha", "0")  # ERank alone
    await page.dispatch_event("#alpha", "input")
    shown = await column(page, "fused")
    assert shown == await rest_order(demo_rest_url, result, 0.0, "zscore")
    orders.add(tuple(shown))
    assert len(orders) > 1  # the slider and the menu did move hits


async def test_browser_fusion_is_the_servers_bit_for_bit(page: Page) -> None:
    rng = random.Random(20)
    cases = []
    for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 64, 127, 128, 129, 200, 300]:
        for method in ("zscore", "minmax", "rrf"):
            first = [rng.choice([rng.uniform(0, 40), 12.5]) for _ in range(n)]
            rank = [rng.choice([rng.uniform(0, 10), 0.0, 7.0]) for _ in range(n)]
            alpha = rng.random()
            cases.append({"first": first, "rank": rank, "alpha": alpha, "method": method,
                          "k": rng.randint(1, 100)})  # fmt: skip
    cases.append({"first": [1e300, -1e300, 5.0], "rank": [3.0, 3.0, 3.0], "alpha": 0.2,
                  "method": "zscore", "k": 60})  # fmt: skip
    script = """async cases => {
        const m = await import('/static/fusion.js');
        return cases.map(c => m.hybridScores(c.first, c.rank, c.alpha, c.method, c.k));
    }"""
    got = await page.evaluate(script, cases)
    for case, scores in zip(cases, got, strict=True):
        want = hybrid_scores(case["first"], case["rank"], case["alpha"], case["method"], case["k"])
        assert scores == want, case["method"]


async def test_reasons_open_from_the_keyboard(page: Page) -> None:
    result = await search(page)
    await page.focus("#fused > li:first-child")
    await page.keyboard.press("r")
    button = page.locator("#fused > li:first-child button.reasons")
    assert await button.get_attribute("aria-expanded") == "true"
    reasoning = page.locator("#fused > li:first-child pre.reasoning")
    assert await reasoning.is_visible()
    assert await reasoning.text_content() == (
        result["reranked"][0]["reasoning"] or "(no reasoning returned)"
    )
    await button.click()
    assert await reasoning.is_hidden()
    await button.click()  # open again for the screenshot
    await page.screenshot(path=str(SCREENSHOT), full_page=False)


async def test_three_keyboard_grades_survive_a_reload(
    page: Page, base: str, workspace: Path
) -> None:
    result = await search(page)
    await page.focus("#fused > li:first-child")
    for key in ("2", "j", "1", "j", "3"):
        await page.keyboard.press(key)
    ids = [r["id"] for r in result["reranked"][:3]]
    want = dict(zip(ids, ["2", "1", "3"], strict=True))
    selector = "#fused select.grade"
    await page.wait_for_function(
        f"() => [...document.querySelectorAll('{selector}')].slice(0, 3).map(s => s.value)"
        f".join() === '{','.join(want.values())}'"
    )
    await page.wait_for_function("() => Object.keys(window.__workbench.grades).length === 3")
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    await search(page)
    grades = await page.eval_on_selector_all(
        "#first-stage > li",
        "items => items.map(i => [i.dataset.doc, i.querySelector('select').value])",
    )
    assert {doc: grade for doc, grade in grades if grade} == want
    qrels = (workspace / "qrels" / "test.tsv").read_text()
    assert all(re.fullmatch(r"\S+ 0 \S+ [0-3]", line) for line in qrels.splitlines())
    parsed = {(q.doc_id, str(q.relevance)) for q in
              ir_measures.read_trec_qrels(str(workspace / "qrels" / "test.tsv"))}  # fmt: skip
    assert set(want.items()) <= parsed


async def test_evaluation_view_shows_erank_evals_numbers(
    page: Page, base: str, workspace: Path, demo_server: ScoringServer, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=base) as client:  # a second judged query
        for doc, grade in (("d2", 3), ("d4", 1), ("d1", 0)):
            body = {"index": INDEX, "field": "text", "query": "fox in the forest",
                    "doc_id": doc, "grade": grade}  # fmt: skip
            assert (await client.put("/api/judgments", json=body)).status_code == 200
    await page.click("#tab-evaluate")
    await page.fill("#depth", str(WINDOW))
    await page.click("#evaluate")
    await page.wait_for_selector("#eval-table", timeout=300_000)
    cells = await page.eval_on_selector_all(
        "#eval-table tr[data-qid]",
        "rows => rows.map(r => [r.dataset.qid, ...[...r.cells].map(c => c.textContent)])",
    )
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "erank_cli", "eval", str(workspace), "--run",
               str(workspace / "runs" / "first_stage.trec"), "--depth", str(WINDOW),
               "--reranker", f"127.0.0.1:{demo_server.port}", "--output", str(out)]  # fmt: skip
    # in a thread: the scoring server the command calls runs on this test's event loop
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, timeout=600)
    systems = {
        s["name"]: s["per_query"] for s in json.loads((out / "eval.json").read_text())["systems"]
    }
    assert len(cells) == len(systems["first_stage"]) == 2
    for qid, _, _, first, erank, hybrid, _ in cells:
        shown = {"first_stage": first, "erank": erank, "hybrid": hybrid}
        for name, text in shown.items():
            assert text == f"{systems[name][qid]['nDCG@10']:.4f}"
    gains = [float(row[-1]) for row in cells]
    assert gains == sorted(gains, reverse=True)  # sorted by the hybrid's gain at first
    await page.click("#eval-table th button[aria-label='sort by query id']")
    qids = await page.eval_on_selector_all(
        "#eval-table tr[data-qid]", "r => r.map(e => e.dataset.qid)"
    )
    assert qids == sorted(qids, reverse=True)
    assert await page.get_attribute("#eval-table th[aria-sort]", "aria-sort") == "descending"
    await page.click("#eval-table th button[aria-label='sort by query id']")
    qids = await page.eval_on_selector_all(
        "#eval-table tr[data-qid]", "r => r.map(e => e.dataset.qid)"
    )
    assert qids == sorted(qids)
    points = await page.get_attribute("#eval-result svg polyline.sweep", "points")
    assert points is not None and len(points.split()) == 11  # the sweep's 11 alphas, charted
    await page.click("#eval-table button.link")  # a query opens in Compare
    await page.wait_for_selector("#view-compare:not([hidden]) #fused > li")


async def test_a_budget_too_small_shows_a_banner(page: Page) -> None:
    """1 ms for a query the model has not seen: its hits are cut at the deadline or the search
    fails open; either way the page says so above the columns."""
    await search(page, "clever birds and vain crows", budget_ms=1)
    text = await page.text_content("#banner") or ""
    assert await page.is_visible("#banner")
    assert "budget" in text or "failed open" in text, text
    assert len(await column(page, "fused")) == len(await column(page, "first-stage")) > 0
    timings = await page.text_content("#timings") or ""
    assert re.search(r"first stage [\d.]+ ms · rerank [\d.]+ ms · cache hits \d+", timings)


async def test_stopped_scoring_server_shows_the_failed_open_banner(
    browser: BrowserContext,
    engine: RunningEngine,
    demo_server: ScoringServer,
    tmp_path: Path,
) -> None:
    settings = engine_settings(demo_checkpoint(), port=free_port())
    async with (
        running_server(settings, demo_server.backend) as server,
        workbench(engine, f"127.0.0.1:{server.port}", tmp_path) as url,
    ):
        page = await browser.new_page()
        await open_page(page, url)
        assert (await search(page))["erank"]["status"] == "reranked"
        await server.stop(grace=0)
        result = await search(page)
        assert result["erank"]["status"] == "failed"
        banner = page.locator("#banner")
        assert await banner.is_visible()
        assert "failed open" in (await banner.text_content() or "")
        assert await column(page, "fused") == await column(page, "first-stage")
        await page.close()


async def test_the_token_is_asked_for_and_sent(
    browser: BrowserContext, engine: RunningEngine, demo_server: ScoringServer, tmp_path: Path
) -> None:
    """With ``--token`` the page says it cannot start; typed into Settings, the token goes with
    every API call and with the qrels export."""
    async with workbench(engine, f"127.0.0.1:{demo_server.port}", tmp_path, token="s3cret") as url:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_selector("body[data-ready='error']")
        assert "401" in (await page.text_content("#banner") or "")
        await page.click("#settings summary")
        await page.fill("#token", "s3cret")
        await page.press("#token", "Enter")
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector("body[data-ready='1']")
        await search(page)
        # the engine's column: there whether or not the rerank made its budget on a loaded
        # machine (the fused column is what the other tests look at)
        await page.focus("#first-stage > li:first-child")
        await page.keyboard.press("2")
        await page.wait_for_function("() => Object.keys(window.__workbench.grades).length === 1")
        async with page.expect_download() as event:
            await page.click("#export")
        download = await event.value
        saved = tmp_path / "qrels.txt"
        await download.save_as(saved)
        assert re.fullmatch(r"q1 0 \S+ 2\n", saved.read_text())
        await page.close()


async def test_knn_first_stage_from_the_vector_controls(
    browser: BrowserContext, engine_pool: EnginePool, demo_server: ScoringServer, tmp_path: Path
) -> None:
    """Where the index has a vector field the page offers kNN: pick it, paste a query vector,
    and the first-stage column is Elasticsearch's own kNN answer (reranked beside it)."""
    elastic = index_corpus(engine_pool, "elasticsearch", ELASTICSEARCH_VERSIONS[-1])
    index_vectors(elastic)
    vector = [0.3, -0.2, 0.9]
    async with workbench(elastic, f"127.0.0.1:{demo_server.port}", tmp_path) as url:
        page = await browser.new_page()
        await open_page(page, url)
        assert await page.is_hidden("#vector-controls")  # the first index has no vectors
        await page.select_option("#index", VECTORS)
        await page.dispatch_event("#index", "change")
        assert await page.is_visible("#vector-controls")
        await page.select_option("#first-stage-kind", "knn")
        await page.fill("#query-vector", json.dumps(vector))
        await page.fill("#window", "5")
        await page.fill("#budget", str(BUDGET_MS))
        await page.fill("#query", QUERY)
        await page.press("#query", "Enter")
        await page.wait_for_selector("body[data-searches='1']", timeout=300_000)
        knn = {"field": "vec", "query_vector": vector, "k": 5, "num_candidates": 100}
        direct = elastic.request("POST", f"/{VECTORS}/_search", {"knn": knn, "size": 5})
        assert await column(page, "first-stage") == [h["_id"] for h in direct["hits"]["hits"]]
        assert await page.evaluate("window.__workbench.result.erank.status") == "reranked"
        controls = page.locator("#vector-controls select, #vector-controls input")
        assert await controls.evaluate_all(UNNAMED) == []
        await page.close()


# The controls with no accessible name: no aria-label(ledby), no <label> around or for them,
# and (buttons, links) no text of their own.
async def test_every_control_is_labelled_and_reachable_by_tab(page: Page) -> None:
    await search(page)
    await page.click("#settings summary")
    for view in ("compare", "evaluate"):
        await page.click(f"#tab-{view}")
        controls = page.locator("input:visible, select:visible, button:visible, a:visible")
        assert await controls.evaluate_all(UNNAMED) == []
        total = await controls.evaluate_all(
            "els => { els.forEach((e, i) => e.dataset.a11y = `c${i}`); return els.length; }"
        )
        reached = await tab_stops(page, total * 3 + 40)
        assert {f"c{i}" for i in range(total)} <= reached


def test_report_timings() -> None:
    """Printed for the record (pytest -s): the page's load and query-to-both-columns times."""
    assert set(TIMINGS) == {
        "page_ready_ms",
        "query_to_both_columns_cold_ms",
        "query_to_both_columns_cached_ms",
    }
    print(f"\nworkbench timings (tiny model, Chromium): {TIMINGS}")
