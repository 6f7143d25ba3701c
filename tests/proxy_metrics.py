"""The proxy's Prometheus metrics, scraped over HTTP after real searches on a real engine.

Collected through ``test_proxy_engines.py`` (which imports these tests), so they run on its
engine and fixtures; on one engine version only: what is counted does not depend on which.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from engines import ALL_ENGINES, RunningEngine, free_port
from proxy_clients import OFF, proxy_config
from scrape import scrape

from connector.proxy.app import running_proxy
from erank.server import ScoringServer

QUERY = {"match": {"text": "quick fox"}}
ON_ONE_ENGINE = pytest.mark.parametrize(
    "engine", [ALL_ENGINES[-1]], indirect=True, ids=["-".join(ALL_ENGINES[-1])]
)


async def _search(http: aiohttp.ClientSession, url: str, index: str) -> str:
    """One search through the proxy; its ``X-Erank-Status``."""
    body: dict[str, Any] = {"query": QUERY, "size": 3}
    async with http.post(f"{url}/{index}/_search", json=body) as response:
        assert response.status == 200, await response.text()
        return response.headers["X-Erank-Status"]


@ON_ONE_ENGINE
async def test_proxy_metrics_count_outcomes_fail_open_and_latency(
    corpus: RunningEngine, tiny_server: ScoringServer
) -> None:
    reranker = f"127.0.0.1:{tiny_server.port}"
    config = proxy_config(log_interval_s=3600)
    async with (
        running_proxy(corpus.url, reranker, config, metrics_port=0) as up,
        running_proxy(corpus.url, f"127.0.0.1:{free_port()}", config, metrics_port=0) as down,
        aiohttp.ClientSession() as http,
    ):
        assert await _search(http, up.url, "docs") == "reranked"
        assert await _search(http, up.url, OFF) == "skipped"
        assert await _search(http, down.url, "docs") == "failed-open"
        async with (
            http.get(f"{up.url}/metrics") as through,
            http.get(f"{corpus.url}/metrics") as direct,
        ):
            assert through.status == direct.status  # an index path, the engine's to answer
        metrics, failed_metrics = up.proxy.metrics.server, down.proxy.metrics.server
        assert metrics is not None and metrics.host == "127.0.0.1"
        ok, failed = await scrape(metrics), await scrape(failed_metrics)

    searches = "erank_proxy_searches_total"
    assert ok(searches, outcome="reranked") == ok(searches, outcome="skipped") == 1
    assert ok(searches, outcome="failed-open") == 0
    assert ok("erank_proxy_skipped_total", reason="disabled") == 1
    assert ok("erank_proxy_first_stage_duration_seconds_count") == 1  # the skipped one streams
    assert ok("erank_proxy_rerank_duration_seconds_count") == 1
    assert ok("erank_proxy_request_duration_seconds_count", kind="search") == 2
    assert ok("erank_proxy_request_duration_seconds_count", kind="other") == 1
    assert ok("erank_proxy_inflight_requests") == 0
    assert failed(searches, outcome="failed-open") == 1
    assert failed("erank_proxy_failed_open_total", type="connection_error") == 1
    assert failed("erank_proxy_rerank_duration_seconds_count") == 1
