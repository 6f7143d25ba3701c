"""Prometheus metrics of the scoring server and the REST front, scraped over HTTP after real calls
(tiny random model, real vLLM CPU engine). The proxy's: tests/proxy_metrics.py, collected on the
proxy tests' real engines.

The scoring server's metrics are process-wide (other servers of this session count into them
too), so its checks compare scrapes before and after; each REST front counts on its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from conftest import engine_settings
from engines import free_port
from scrape import Scrape, scrape

from connector.rest import create_app, serving
from connector.rest.app import METRICS
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


def fresh_texts(n: int) -> list[str]:
    """Texts no earlier call scored (the score cache cannot answer them)."""
    tag = uuid.uuid4().hex
    return [f"text {tag} number {i}" for i in range(n)]


def fresh_docs(n: int) -> list[pb.Document]:
    return [pb.Document(id=str(i), text=text) for i, text in enumerate(fresh_texts(n))]


async def engine_busy(server: ScoringServer, call: asyncio.Future[Any]) -> None:
    """Wait until the engine works on ``call`` (so it is in flight at every hop before it)."""
    backend = server.backend
    assert backend is not None
    while backend.running_requests() == 0:
        assert not call.done(), "the call ended before the engine was seen working on it"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def metered_server(tiny_server: ScoringServer) -> AsyncIterator[ScoringServer]:
    """A scoring server with /metrics and one call in flight at most, on the session's engine."""
    settings = engine_settings(
        Path(tiny_server.settings.model), metrics_port=0, max_inflight_requests=1
    )
    async with running_server(settings, tiny_server.backend) as server:
        yield server


def rerank_calls(s: Scrape, code: str, method: str = "Rerank") -> float:
    return s("erank_requests_total", method=method, code=code)


async def test_server_counts_calls_by_method_and_status(metered_server: ScoringServer) -> None:
    assert metered_server.metrics is not None and metered_server.metrics.host == "127.0.0.1"
    before = await scrape(metered_server.metrics)
    async with AsyncRerankerClient(f"127.0.0.1:{metered_server.port}", timeout=120) as client:
        await client.rerank(pb.RerankRequest(query="q", documents=fresh_docs(3)))
        with pytest.raises(grpc.aio.AioRpcError):
            await client.rerank(pb.RerankRequest(query=" ", documents=fresh_docs(1)))
        events = [
            e async for e in client.stream(pb.RerankRequest(query="q", documents=fresh_docs(2)))
        ]
        assert events
        busy = asyncio.ensure_future(
            client.rerank(pb.RerankRequest(query="q", documents=fresh_docs(20)))
        )
        await engine_busy(metered_server, busy)
        during = await scrape(metered_server.metrics)
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # the one place is taken
            await client.rerank(pb.RerankRequest(query="q", documents=fresh_docs(1)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await busy
    after = await scrape(metered_server.metrics)

    assert during("erank_inflight_requests") == 1
    assert during("erank_queued_documents") == 20
    assert after("erank_inflight_requests") == after("erank_queued_documents") == 0
    for code, calls in (("OK", 2), ("INVALID_ARGUMENT", 1), ("RESOURCE_EXHAUSTED", 1)):
        assert rerank_calls(after, code) - rerank_calls(before, code) == calls, code
    assert (
        rerank_calls(after, "OK", "RerankStream") - rerank_calls(before, "OK", "RerankStream") == 1
    )
    duration = "erank_request_duration_seconds_count"
    assert after(duration, method="Rerank") - before(duration, method="Rerank") == 4
    scored = "erank_documents_scored_total"
    assert after(scored, mode="full") - before(scored, mode="full") == 3 + 2 + 20
    tokens = "erank_generated_tokens_total"
    assert after(tokens, backend="vllm") > before(tokens, backend="vllm")


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> int:
    async with http.post(url, json=body) as response:
        return response.status


async def test_rest_front_counts_routes_statuses_and_scoring_failures(
    tiny_server: ScoringServer,
) -> None:
    app = create_app(f"127.0.0.1:{tiny_server.port}", timeout=120, metrics_port=0)
    down = create_app(f"127.0.0.1:{free_port()}", timeout=10, metrics_port=0)
    async with (
        serving(app) as url,
        serving(down) as down_url,
        aiohttp.ClientSession() as http,
    ):
        metrics = app[METRICS].server
        assert metrics is not None and metrics.host == "127.0.0.1"
        assert await _post(http, f"{url}/v1/rerank", {"query": "q", "documents": ["a", 3]}) == 400
        assert await _post(http, f"{url}/v1/rerank", {"query": " ", "documents": ["a"]}) == 400
        async with http.get(f"{url}/metrics") as answer:  # only on the metrics port
            assert answer.status == 404
        busy = asyncio.ensure_future(
            _post(http, f"{url}/v1/rerank", {"query": "q", "documents": fresh_texts(10)})
        )
        await engine_busy(tiny_server, busy)
        during = await scrape(metrics)
        assert await busy == 200
        assert await _post(http, f"{down_url}/rerank", {"query": "q", "texts": ["a"]}) == 503
        after, down_after = await scrape(metrics), await scrape(down[METRICS].server)

    assert during("erank_rest_inflight_requests") == 1
    assert after("erank_rest_inflight_requests") == 0
    requests = "erank_rest_requests_total"
    assert after(requests, route="/v1/rerank", status="400") == 2
    assert after(requests, route="/v1/rerank", status="200") == 1
    assert after(requests, route="unmatched", status="404") == 1
    assert after("erank_rest_request_duration_seconds_count", route="/v1/rerank") == 3
    failures = "erank_rest_scoring_failures_total"
    assert after(failures, type="illegal_argument_exception") == 1  # the server's refusal
    assert down_after(failures, type="connection_error") == 1
    assert down_after(requests, route="/rerank", status="503") == 1


async def test_a_request_its_client_abandons_reads_the_same_in_log_and_metrics(
    tiny_server: ScoringServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The client goes away while the front waits on the engine: its handler (and scoring
    call) is cancelled, and the access line and the request counter both say 499, nginx's
    "client closed request" (one measurement, connector/telemetry.py)."""
    caplog.set_level(logging.INFO, logger="erank.access")
    app = create_app(f"127.0.0.1:{tiny_server.port}", timeout=120, metrics_port=0)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        metrics = app[METRICS].server
        assert metrics is not None
        body = {"query": "q", "documents": fresh_texts(20)}
        call = asyncio.ensure_future(_post(http, f"{url}/v1/rerank", body))
        await engine_busy(tiny_server, call)
        call.cancel()
        lines: list[str] = []
        for _ in range(600):
            lines = [r.getMessage() for r in caplog.records if r.name == "erank.access"]
            if lines:
                break
            await asyncio.sleep(0.1)
        (line,) = lines
        after = await scrape(metrics)
    assert line.split()[3] == "499"
    assert after("erank_rest_requests_total", route="/v1/rerank", status="499") == 1
    assert after("erank_rest_inflight_requests") == 0
