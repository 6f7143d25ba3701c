"""A proxied search followed across hops: proxy → gRPC client → scoring server, one trace, one
request id (tests/test_tracing.py does the same through the REST front).

Collected through ``test_proxy_engines.py`` (which imports this test and the span fixtures), so
it runs on that module's engines and proxy, started once for every file.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from engines import RunningEngine
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from spans import SECRET, TRACEPARENT, assert_hops, one, request_ids

from connector.proxy.app import RunningProxy


async def test_proxied_search_is_one_trace_under_one_request_id(
    corpus: RunningEngine,
    proxy: RunningProxy,
    recorded: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller's ``traceparent`` and ``X-Request-Id``: the proxy's span is its child, the
    scoring call's client and server spans follow, the proxy and the scoring server log the
    caller's id and the answer carries it. The search's own words show in no span or line."""
    body = {"query": {"match": {"text": f"quick fox {SECRET}"}}, "size": 3}
    headers = {
        "Content-Type": "application/json",
        "traceparent": TRACEPARENT,
        "X-Request-Id": "proxy-caller-9",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{proxy.url}/docs/_search", data=json.dumps(body), headers=headers) as answer,
    ):
        await answer.read()
    assert answer.status == 200 and answer.headers["X-Erank-Status"] == "reranked"
    assert answer.headers["X-Request-Id"] == "proxy-caller-9"
    found = recorded.get_finished_spans()
    front = one(found, "POST", trace.SpanKind.SERVER)
    assert front.attributes is not None and front.attributes["url.path"] == "/docs/_search"
    assert_hops(found, front, caplog.text)
    assert request_ids(caplog.records, "erank.access") == {"proxy-caller-9"}
    assert request_ids(caplog.records, "erank.rpc") == {"proxy-caller-9"}
