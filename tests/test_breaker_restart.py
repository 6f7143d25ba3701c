"""The proxy's circuit breaker before a scoring server that really restarts: `erank serve` on the
tiny checkpoint, whose port opens at once (NOT_SERVING) while its model loads for seconds to tens
of seconds. The breaker's trial asks the server's health first and makes its call only once it
says SERVING: no ``Rerank`` reaches the loading server (one would fail and open the breaker for a
whole cool-down more), and reranking resumes within about a health interval of SERVING.

A real proxy before a real OpenSearch (the session's shared engine), a real server process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from engines import OPENSEARCH_VERSIONS, EnginePool, RunningEngine
from proxy_breaker import QUERY, post, stats
from proxy_clients import index_corpus, proxy_config
from test_operations_process import NOT_SERVING, SERVING, erank_serve, free_port, health, output_of

from connector.proxy.app import running_proxy
from connector.rewrite.breaker import BreakerConfig

pytestmark = pytest.mark.engine
COOLDOWN_MS = 1000  # shorter than the model's load: the first trial comes while it loads
HEALTH_INTERVAL_MS = 200


@pytest.fixture(scope="module")
def corpus(engine_pool: EnginePool) -> RunningEngine:
    engine = engine_pool.get("opensearch", OPENSEARCH_VERSIONS[-1])
    index_corpus(engine)
    return engine


async def test_reranking_resumes_as_soon_as_a_restarted_server_says_serving(
    corpus: RunningEngine, random_checkpoint: Path
) -> None:
    port = free_port()
    breaker = BreakerConfig(
        failures=1, cooldown_ms=COOLDOWN_MS, health_interval_ms=HEALTH_INTERVAL_MS
    )
    config = proxy_config(breaker=breaker)
    async with (
        running_proxy(corpus.url, f"127.0.0.1:{port}", config) as proxy,
        aiohttp.ClientSession() as http,
    ):
        _, outcome, body = await post(http, proxy.url, QUERY)  # nobody listens: it opens
        assert outcome == "failed-open" and body["ext"]["erank"]["breaker"]["state"] == "open"
        with erank_serve(random_checkpoint, port) as proc:
            while (status := await asyncio.to_thread(health, port, 0.5)) != NOT_SERVING:
                assert proc.poll() is None and status != SERVING, output_of(proc)
                await asyncio.sleep(0.05)
            await asyncio.sleep(COOLDOWN_MS / 1000)  # the cool-down ends while the model loads
            errors, serving_at, sent = await search_until_reranked(http, proxy.url, port)
            counted = await stats(http, proxy)
            output = output_of(proc)
    print(f"{len(errors)} searches failed open while loading; reranked {sent - serving_at:.2f} s")
    # The server logs every Rerank call: none came while it loaded (each would have been
    # UNAVAILABLE and reopened the breaker for a whole cool-down).
    assert "Rerank UNAVAILABLE" not in output, output
    assert "Rerank OK" in output
    # The searches failed open without a call: the breaker's trial found the health NOT_SERVING
    # (or, while gRPC reconnected to the new process, could not ask it: a failed trial).
    assert errors.count("circuit_open") > len(errors) / 2 and set(errors) <= {
        "circuit_open",
        "connection_error",
    }, errors
    assert counted["breaker"]["state"] == "closed"
    assert sent - serving_at < 2.0


async def search_until_reranked(
    http: aiohttp.ClientSession, url: str, port: int
) -> tuple[list[str], float, float]:
    """Search until reranked, asking the server's health between searches: the error types of
    the searches that failed open, when the health first said SERVING, and when the reranked
    search was sent."""
    errors: list[str] = []
    serving_at: float | None = None
    began = time.monotonic()
    while time.monotonic() - began < 300:
        sent = time.monotonic()
        _, outcome, body = await post(http, url, QUERY)
        if outcome == "reranked":  # SERVING since the last check, if not before
            return errors, sent if serving_at is None else serving_at, sent
        erank: dict[str, Any] = body["ext"]["erank"]
        errors.append(erank["error"]["type"])
        if serving_at is None and await asyncio.to_thread(health, port, 0.5) == SERVING:
            serving_at = time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reranked within 300 s: {errors[-3:]}")
