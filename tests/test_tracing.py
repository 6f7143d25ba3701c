"""One request followed across hops: REST front → gRPC client → scoring server, in one trace
and under one request id, on the real servers (the proxy's hop: tests/proxy_tracing.py, run on
the real engines of test_proxy_engines.py).

Spans go to OpenTelemetry's in-memory exporter (tests/spans.py); log records are pytest's, with
the request-id filter a user's handler has. ``erank rest`` itself runs once as a subprocess with
the standard OTEL_* variables and ``--log-format json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from spans import (
    SECRET,
    TRACE_ID,
    TRACEPARENT,
    assert_hops,
    one,
    recorded_fixture,  # noqa: F401  fixture "recorded"
    request_ids,
    spans_fixture,  # noqa: F401  fixture "spans"
)

from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.telemetry import log_handler, setup_tracing
from erank_contract.v1 import reranker_pb2 as pb

BODY = {"query": f"{SECRET} query", "documents": [f"{SECRET} one", f"{SECRET} two"]}
MADE = re.compile(r"[0-9a-f]{32}")  # an id the hop made itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def json_objects(text: str) -> list[Any]:
    """The JSON objects written one after another (the console exporter's indented spans)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


async def _rerank(url: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return await http.post("/v1/rerank", json=BODY, headers=headers)


async def test_rest_front_continues_the_callers_trace(
    rest_url: str, recorded: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller's ``traceparent`` and ``X-Request-Id``: the front's span is its child, the
    scoring call's client and server spans follow, every hop logs the caller's id."""
    answer = await _rerank(rest_url, {"traceparent": TRACEPARENT, "X-Request-Id": "caller-42"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Request-Id"] == "caller-42"
    found = recorded.get_finished_spans()
    front = one(found, "POST /v1/rerank", trace.SpanKind.SERVER)
    assert front.attributes is not None
    assert front.attributes["http.route"] == "/v1/rerank"
    assert front.attributes["http.response.status_code"] == 200
    assert_hops(found, front, caplog.text)
    assert request_ids(caplog.records, "erank.access") == {"caller-42"}
    assert request_ids(caplog.records, "erank.rpc") == {"caller-42"}
    hops = [r for r in caplog.records if r.name in ("erank.access", "erank.rpc")]
    assert {getattr(r, "trace_id", None) for r in hops} == {TRACE_ID}


@pytest.mark.parametrize("given", [None, "has space", "x" * 129, "semi;colon"])
async def test_unfit_or_missing_request_id_is_replaced(
    rest_url: str,
    recorded: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    given: str | None,
) -> None:
    """No id, or one that is long or not plain: the front makes one, answers it and sends it
    on; the scoring server logs the same one. No traceparent: a new trace, same chain."""
    answer = await _rerank(rest_url, {} if given is None else {"X-Request-Id": given})
    assert answer.status_code == 200, answer.text
    made = answer.headers["X-Request-Id"]
    assert MADE.fullmatch(made) and made != given
    assert request_ids(caplog.records, "erank.rpc") == {made}
    found = recorded.get_finished_spans()
    assert len({s.context.trace_id for s in found}) == 1 and len(found) == 3


async def test_scoring_server_names_calls_without_an_id(
    tiny_client: AsyncRerankerClient,
    recorded: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that sends no id still gets one logged per call; a refused call's span and log
    line say its status."""
    documents = [pb.Document(id="d", text="d")]
    await tiny_client.rerank(pb.RerankRequest(query="q", documents=documents))
    with pytest.raises(grpc.aio.AioRpcError):
        await tiny_client.rerank(pb.RerankRequest(query="q", documents=[pb.Document(text="d")]))
    ids = [getattr(r, "request_id", "") for r in caplog.records if r.name == "erank.rpc"]
    assert len(ids) == 2 and all(MADE.fullmatch(i) for i in ids) and ids[0] != ids[1]
    assert [r.getMessage().split()[:2] for r in caplog.records if r.name == "erank.rpc"] == [
        ["Rerank", "OK"],
        ["Rerank", "INVALID_ARGUMENT"],
    ]
    refused = [
        s
        for s in recorded.get_finished_spans()
        if s.attributes and s.attributes.get("rpc.grpc.status_code") == 3
    ]
    assert {s.kind for s in refused} == {trace.SpanKind.CLIENT, trace.SpanKind.SERVER}
    assert all(s.status.status_code == trace.StatusCode.ERROR for s in refused)


def _blocking_calls(port: int) -> int:
    """A blocking client's stream and call inside the caller's span; events received."""
    request = pb.RerankRequest(query=SECRET, documents=[pb.Document(id="d", text=SECRET)])
    tracer = trace.get_tracer("caller")
    with (
        RerankerClient(f"127.0.0.1:{port}", timeout=120) as client,
        tracer.start_as_current_span("caller"),
    ):
        events = list(client.stream(request))
        client.rerank(request)
    return len(events)


async def test_blocking_client_and_streams_are_traced(
    tiny_server: ScoringServer, recorded: InMemorySpanExporter
) -> None:
    """The blocking client's ``stream`` and ``rerank``: client spans in the caller's trace, the
    server's spans their children, the stream's ended with its status once it is done."""
    assert await asyncio.to_thread(_blocking_calls, tiny_server.port) == 2
    for _ in range(100):  # a stream's span ends in gRPC's thread, as the call completes
        found = recorded.get_finished_spans()
        if len(found) == 5:
            break
        await asyncio.sleep(0.05)
    caller = one(found, "caller", trace.SpanKind.INTERNAL)
    for method in ("Rerank", "RerankStream"):
        client = one(found, f"erank.v1.Reranker/{method}", trace.SpanKind.CLIENT)
        server = one(found, f"erank.v1.Reranker/{method}", trace.SpanKind.SERVER)
        assert client.parent is not None and client.parent.span_id == caller.context.span_id
        assert server.parent is not None and server.parent.span_id == client.context.span_id
        assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == 0


async def test_json_log_lines_carry_request_and_trace_ids(
    rest_url: str, recorded: InMemorySpanExporter
) -> None:
    """``--log-format json``'s handler: one JSON object per line, ids included."""
    lines = io.StringIO()
    handler = log_handler("json", lines)
    erank = logging.getLogger("erank")
    erank.addHandler(handler)
    try:
        answer = await _rerank(rest_url, {"traceparent": TRACEPARENT, "X-Request-Id": "json-1"})
    finally:
        erank.removeHandler(handler)
    assert answer.status_code == 200
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert {r["logger"] for r in records} >= {"erank.access", "erank.rpc"}
    for record in records:
        assert record["request_id"] == "json-1" and record["trace_id"] == TRACE_ID
        assert {"time", "level", "message", "span_id"} <= set(record)


def test_tracing_stays_off_unless_asked() -> None:
    """No OTEL_* variable (or ``none``, or the SDK disabled): no provider is installed."""
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true"}):
        assert not setup_tracing("erank-test", env)


async def _erank_rest(port: int, env: dict[str, str], headers: dict[str, str]) -> Any:
    """``erank rest`` as a user runs it: one rerank call, then SIGTERM; (answer, stdout, stderr)."""
    command = [sys.executable, "-m", "erank_cli", "rest", f"--port={port}", "--timeout=120"]
    process = subprocess.Popen(
        [*command, "--log-format=json", f"--reranker={env.pop('RERANKER')}"],
        env=os.environ | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    await http.get("/health")
                    break
                assert process.poll() is None, process.communicate()
                await asyncio.sleep(0.1)
            answer = await http.post("/v1/rerank", json=BODY, headers=headers)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    return answer, out, err


async def test_erank_rest_exports_spans_and_json_logs(tiny_server: ScoringServer) -> None:
    """OTEL_TRACES_EXPORTER=console and OTEL_SERVICE_NAME: the command's spans are exported
    (flushed at exit) under that name in the caller's trace; its log lines are JSON."""
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "rest-under-test",
        "RERANKER": f"127.0.0.1:{tiny_server.port}",
    }
    headers = {"traceparent": TRACEPARENT, "X-Request-Id": "cli-7"}
    answer, out, err = await _erank_rest(free_port(), env, headers)
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "cli-7"
    exported = json_objects(out)
    rerank = [s for s in exported if s["name"] == "POST /v1/rerank"]
    assert len(rerank) == 1 and rerank[0]["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert rerank[0]["resource"]["attributes"]["service.name"] == "rest-under-test"
    assert any(s["name"] == "erank.v1.Reranker/Rerank" for s in exported)
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [r for r in logged if r["logger"] == "erank.access" and r["request_id"] == "cli-7"]
    assert len(access) == 1 and access[0]["trace_id"] == TRACE_ID
    assert SECRET not in out + err
