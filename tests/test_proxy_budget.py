"""The proxy's budget on a real engine: cut answers instead of failing open (issue 19).

The newest OpenSearch from the session's engine pool, the real proxy, real scoring servers on the
vLLM CPU engine. Each reranked search says how its hits were answered (``fields._erank``'s
``completion``, ``ext.erank.completions``, ``X-Erank-Completions``), and ``on_budget`` and
``finish_in_background`` are taken per search and refused by name when wrong.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from conftest import engine_settings
from engines import OPENSEARCH_VERSIONS, RunningEngine, engines_fixture
from proxy_clients import WINDOW, index_corpus, proxy_config

from connector.proxy.app import RunningProxy, running_proxy
from connector.rest import create_app, serving
from connector.rewrite.config import IndexConfig, ProxyConfig
from erank.checkpoints import Script, TinyConfig, build_scripted_checkpoint
from erank.server import ScoringServer, running_server

pytestmark = pytest.mark.engine
engine = engines_fixture([("opensearch", OPENSEARCH_VERSIONS[-1])], scope="module")
QUERY = {"match": {"text": "quick fox"}}
COMPLETION_KEYS = {"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}


@pytest.fixture(scope="module")
def corpus(engine: RunningEngine) -> RunningEngine:
    index_corpus(engine)
    return engine


@pytest_asyncio.fixture(scope="module")
async def proxy(corpus: RunningEngine, tiny_server: ScoringServer) -> AsyncIterator[RunningProxy]:
    async with running_proxy(
        corpus.url, f"127.0.0.1:{tiny_server.port}", proxy_config()
    ) as running:
        yield running


async def search(
    url: str, body: dict[str, Any], path: str = "/docs/_search"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of one search through the proxy at ``url``."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, json=body) as answer,
    ):
        return answer.status, await answer.json(), dict(answer.headers)


async def test_a_reranked_search_says_how_each_hit_was_answered(proxy: RunningProxy) -> None:
    status, body, headers = await search(proxy.url, {"query": QUERY, "size": WINDOW})
    assert status == 200 and headers["X-Erank-Status"] == "reranked"
    erank = body["ext"]["erank"]
    completions = erank["completions"]
    assert set(completions) == COMPLETION_KEYS
    assert completions["full"] + completions["cut"] + completions["unscored"] == WINDOW
    counts = ";".join(f"{k}={completions[k]}" for k in ("full", "cut", "unscored", "cached"))
    assert headers["X-Erank-Completions"] == counts
    marks = [hit["fields"]["_erank"][0] for hit in body["hits"]["hits"]]
    assert len(marks) == WINDOW
    assert sum(m["completion"] == "full" for m in marks) == completions["full"]
    assert all(isinstance(m["thinking_tokens"], int) for m in marks)
    overhead = proxy.proxy.stats.as_json()["overhead"]
    assert overhead["calls"] >= 1 and overhead["assembly_ms"] > 0


async def test_the_server_is_given_the_budget_less_the_overhead(proxy: RunningProxy) -> None:
    """Seen from the server: the deadline it worked to (``completions.deadline_ms``) is the
    index's budget less the proxy's overhead estimate with ``cut``; with ``fail_open``
    (DEADLINE_POLICY_FAIL) it worked to none: all or nothing, the gRPC deadline ends the call."""
    overhead = proxy.proxy.stats.overhead
    overhead.transport_ms = 250.0  # as if the server were far away: a visible share
    budget = proxy.proxy.config.default.budget_ms
    _, body, _ = await search(proxy.url, {"query": QUERY})
    given = body["ext"]["erank"]["completions"]["deadline_ms"]
    assert budget - 250 - 100 < given <= budget - 250
    overhead.transport_ms = 250.0
    _, body, _ = await search(
        proxy.url, {"query": QUERY, "ext": {"erank": {"on_budget": "fail_open"}}}
    )
    assert body["ext"]["erank"]["status"] == "reranked"
    assert body["ext"]["erank"]["completions"]["deadline_ms"] == 0


@pytest.mark.parametrize(
    ("ext", "words"),
    [
        ({"on_budget": "later"}, "[ext.erank.on_budget] Input should be 'cut' or 'fail_open'"),
        (
            {"on_budget": "fail_open", "finish_in_background": True},
            "finish_in_background only applies to on_budget: cut",
        ),
        ({"finish_in_background": "sometimes"}, "[ext.erank.finish_in_background]"),
    ],
    ids=["on_budget", "background-without-cut", "background-not-a-boolean"],
)
async def test_bad_budget_options_are_400s_naming_the_key(
    proxy: RunningProxy, ext: dict[str, Any], words: str
) -> None:
    status, body, _ = await search(proxy.url, {"query": QUERY, "ext": {"erank": ext}})
    assert status == 400, body
    assert body["error"]["type"] == "illegal_argument_exception"
    assert words in body["error"]["reason"]


async def test_per_search_options_and_msearch(proxy: RunningProxy) -> None:
    for ext in ({"on_budget": "fail_open"}, {"on_budget": "cut", "finish_in_background": True}):
        status, body, headers = await search(proxy.url, {"query": QUERY, "ext": {"erank": ext}})
        assert status == 200 and body["ext"]["erank"]["status"] == "reranked", body
        assert "X-Erank-Completions" in headers
    items = [{}, {"query": {"match": {"text": "fox"}}, "size": 3}, {}, {"query": QUERY}]
    lines = "".join(json.dumps(item) + "\n" for item in items)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            proxy.url + "/docs/_msearch",
            data=lines,
            headers={"Content-Type": "application/x-ndjson"},
        ) as answer,
    ):
        assert answer.status == 200
        responses = (await answer.json())["responses"]
        assert answer.headers["X-Erank-Status"] == "reranked"
    for item in responses:  # each item says it in its own ext.erank
        assert set(item["ext"]["erank"]["completions"]) == COMPLETION_KEYS


# --- issue 19's done-when: a model that reasons longer than the budget ----------------------

THINK = 400  # the checkpoint of tests/test_anytime.py (built once, cached)
LONG_REASONING = Script(text="<think>ok</think><answer>7</answer>", think_tokens=THINK)
SLACK_MS = 100.0  # what the proxy may add past the budget: the page, its JSON, HTTP


@pytest.fixture(scope="module")
def long_checkpoint() -> Path:
    return build_scripted_checkpoint(LONG_REASONING, TinyConfig(hidden_size=512))


@pytest_asyncio.fixture(scope="module")
async def slow_server(long_checkpoint: Path) -> AsyncIterator[ScoringServer]:
    """A scripted model that reasons 400 tokens before every answer, on the vLLM CPU engine."""
    settings = engine_settings(long_checkpoint, max_new_tokens=THINK + 64)
    async with running_server(settings) as server:
        yield server


def fresh(ext: dict[str, Any] | None = None) -> dict[str, Any]:
    """A search no score cache has seen: a new query text each time."""
    text = f"quick fox {uuid.uuid4().hex}"
    return {"query": QUERY, "size": WINDOW, "ext": {"erank": {"query_text": text, **(ext or {})}}}


def budget_config(budget_ms: int, **options: Any) -> ProxyConfig:
    default = IndexConfig(fields=("text",), window=WINDOW, budget_ms=budget_ms, **options)
    return ProxyConfig(default=default)


async def full_reasoning_ms(corpus: RunningEngine, server: ScoringServer) -> float:
    """What the window's full reasoning takes on this machine now (nothing cut)."""
    async with running_proxy(corpus.url, f"127.0.0.1:{server.port}", budget_config(300_000)) as p:
        _, body, _ = await search(p.url, fresh())
    erank = body["ext"]["erank"]
    assert erank["status"] == "reranked" and erank["completions"]["full"] == WINDOW, erank
    hits = body["hits"]["hits"]
    assert {h["fields"]["_erank"][0]["thinking_tokens"] for h in hits} == {THINK + 3}
    return float(erank["rerank_ms"])


async def test_a_budget_shorter_than_the_reasoning_is_answered_reranked_within_it(
    corpus: RunningEngine, slow_server: ScoringServer
) -> None:
    """Issue 19's done-when: ``on_budget: cut`` answers reranked within the budget (+
    :data:`SLACK_MS`) where ``fail_open`` fails open, as every budget did before."""
    full_ms = await full_reasoning_ms(corpus, slow_server)
    budget = max(200, int(0.4 * full_ms))
    assert budget < full_ms
    reranker = f"127.0.0.1:{slow_server.port}"
    async with running_proxy(corpus.url, reranker, budget_config(budget)) as cut:
        await search(cut.url, fresh())  # the server's closing margin learns this load
        began = time.perf_counter()
        status, body, headers = await search(cut.url, fresh())
        took_ms = (time.perf_counter() - began) * 1000
    assert status == 200 and headers["X-Erank-Status"] == "reranked", body["ext"]
    erank = body["ext"]["erank"]
    completions = erank["completions"]
    assert erank["status"] == "reranked" and completions["cut"] > 0, erank
    assert sum(completions[k] for k in ("full", "cut", "unscored")) == WINDOW
    assert 0 < completions["deadline_ms"] < budget  # the server was given less than the budget
    assert took_ms - erank["first_stage_ms"] <= budget + SLACK_MS, (took_ms, erank)
    marks = [h["fields"]["_erank"][0] for h in body["hits"]["hits"]]
    cut_marks = [m for m in marks if m["completion"] == "cut"]
    assert len(cut_marks) == completions["cut"]
    assert all(0 < m["thinking_tokens"] < THINK for m in cut_marks)
    assert f"cut={completions['cut']}" in headers["X-Erank-Completions"]

    async with running_proxy(
        corpus.url, reranker, budget_config(budget, on_budget="fail_open")
    ) as all_or_nothing:
        status, body, headers = await search(all_or_nothing.url, fresh())
    assert status == 200 and headers["X-Erank-Status"] == "failed-open"
    assert body["ext"]["erank"]["status"] == "failed"
    assert body["ext"]["erank"]["error"]["type"] == "timeout"


async def test_cut_hits_finish_in_the_background_for_the_next_search(
    corpus: RunningEngine, slow_server: ScoringServer
) -> None:
    full_ms = await full_reasoning_ms(corpus, slow_server)
    budget = max(200, int(0.4 * full_ms))
    again = fresh({"finish_in_background": True})
    async with running_proxy(
        corpus.url, f"127.0.0.1:{slow_server.port}", budget_config(budget)
    ) as cut:
        _, first, _ = await search(cut.url, again)
        assert first["ext"]["erank"]["completions"]["cut"] > 0, first["ext"]
        scorer = slow_server.service.scorer
        assert scorer is not None
        waited = time.monotonic()
        while len(scorer.background) and time.monotonic() - waited < 120:
            await asyncio.sleep(0.1)
        _, second, _ = await search(cut.url, again)
    completions = second["ext"]["erank"]["completions"]
    assert completions["full"] == completions["cached"] == WINDOW, completions
    marks = [h["fields"]["_erank"][0] for h in second["hits"]["hits"]]
    assert {(m["completion"], m["thinking_tokens"]) for m in marks} == {("full", 0)}  # cached


async def test_the_rest_front_cuts_within_budget_ms_or_answers_504(
    slow_server: ScoringServer,
) -> None:
    """The REST front (the OpenSearch processor's route): ``budget_ms`` with ``cut`` gives every
    document an answer in time; ``fail_open`` a 504 for the caller to fail open."""
    documents = [f"document {i} {uuid.uuid4().hex}" for i in range(4)]
    app = create_app(f"127.0.0.1:{slow_server.port}", timeout=120)
    async with serving(app) as url, aiohttp.ClientSession() as http:

        async def rerank(**fields: Any) -> tuple[int, Any, float]:
            body = {"query": f"q {uuid.uuid4().hex}", "documents": documents, **fields}
            began = time.perf_counter()
            async with http.post(url + "/v1/rerank", json=body) as answer:
                return answer.status, await answer.json(), (time.perf_counter() - began) * 1000

        _, whole, full_ms = await rerank()
        assert whole["completions"]["full"] == 4
        budget = max(200, int(0.4 * full_ms))
        await rerank(budget_ms=budget)  # the closing margin learns this load
        status, cut, took_ms = await rerank(budget_ms=budget)
        refused, error, _ = await rerank(budget_ms=budget, on_budget="fail_open")
    assert status == 200 and cut["completions"]["cut"] > 0, cut
    assert 0 < cut["completions"]["deadline_ms"] < budget
    assert {r["completion"] for r in cut["results"]} <= {"cut", "full", "unscored"}
    assert took_ms <= budget + SLACK_MS
    assert refused == 504 and error["error"]["type"] == "timeout"
