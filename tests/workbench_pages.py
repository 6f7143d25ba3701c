"""The workbench page as the browser tests drive it: open, type a query and submit, read a
column; the REST front's order to compare with; the accessibility checks' helpers."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page
from workbench_setup import BUDGET_MS, DOCS, INDEX, QUERY

WINDOW = 8  # hits per search in the browser tests


async def open_page(page: Page, base: str) -> None:
    await page.goto(base)
    await page.wait_for_selector("body[data-ready='1']")


async def search(
    page: Page, query: str = QUERY, field: str = "text", budget_ms: int = BUDGET_MS
) -> dict[str, Any]:
    """Type the query as a user does and submit with Enter; the page's last result."""
    before = int(await page.evaluate("document.body.dataset.searches || 0"))
    await page.select_option("#index", INDEX)
    await page.select_option("#field", field)
    await page.fill("#window", str(WINDOW))
    await page.fill("#shown", str(WINDOW))
    await page.fill("#budget", str(budget_ms))
    await page.fill("#query", "")
    await page.type("#query", query)
    await page.press("#query", "Enter")
    await page.wait_for_selector(f"body[data-searches='{before + 1}']", timeout=300_000)
    return await page.evaluate("window.__workbench.result")  # type: ignore[no-any-return]


async def column(page: Page, list_id: str) -> list[str]:
    return await page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"#{list_id} > li", "items => items.map(i => i.dataset.doc)"
    )


async def rest_order(rest_url: str, result: dict[str, Any], alpha: float, fusion: str) -> list[str]:
    """The REST front's ``/v1/rerank`` order for the window's documents at ``alpha``."""
    rows = sorted(result["reranked"], key=lambda r: r["first_stage_rank"])
    body = {
        "query": QUERY,
        "documents": [DOCS[r["id"]]["text"] for r in rows],
        "first_stage_scores": [r["first_stage_score"] for r in rows],
        "alpha": alpha,
        "fusion": fusion,
        **({"rank_constant": 60} if fusion == "rrf" else {}),
    }
    async with httpx.AsyncClient(timeout=300) as client:
        answer = (await client.post(f"{rest_url}/v1/rerank", json=body)).json()
    return [rows[r["index"]]["id"] for r in answer["results"]]


UNNAMED = """els => els.filter(e => !(
        e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.closest('label')
        || (e.id && document.querySelector(`label[for="${e.id}"]`))
        || (['BUTTON', 'A'].includes(e.tagName) && e.textContent.trim())
    )).map(e => e.outerHTML)"""


async def tab_stops(page: Page, count: int) -> set[str]:
    seen = set()
    await page.focus("body")
    for _ in range(count):
        await page.keyboard.press("Tab")
        seen.add(await page.evaluate("document.activeElement.dataset.a11y || ''"))
    return seen
