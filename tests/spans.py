"""Spans recorded in memory, for the tests that follow a request across hops.

OpenTelemetry's global ``TracerProvider`` can be set once per process: the first module that
asks sets an SDK one; each module adds its own in-memory exporter and shuts it at its end, so
later tests record nothing (their spans are made and dropped, as with any provider). A module
imports ``spans_fixture`` and ``recorded_fixture``; tests ask for ``spans`` and ``recorded``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from erank_contract.telemetry import RequestIdFilter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
SECRET = "zebra-quartz"  # in queries and documents: must show in no span and no log line


@pytest.fixture(scope="module", name="spans")
def spans_fixture() -> Iterator[InMemorySpanExporter]:
    """This module's finished spans (cleared before each test that asks for them)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(name="recorded")
def recorded_fixture(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> Iterator[InMemorySpanExporter]:
    """Spans and log records (request ids stamped, INFO and up) of this test only."""
    spans.clear()
    stamp = RequestIdFilter()
    caplog.handler.addFilter(stamp)
    caplog.set_level(logging.INFO)
    yield spans
    caplog.handler.removeFilter(stamp)


def one(found: Sequence[ReadableSpan], name: str, kind: trace.SpanKind) -> ReadableSpan:
    """The one span called ``name`` of ``kind``."""
    matching = [s for s in found if s.name == name and s.kind == kind]
    assert len(matching) == 1, [(s.name, s.kind) for s in found]
    return matching[0]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


def assert_hops(found: Sequence[ReadableSpan], front: ReadableSpan, caplog_text: str) -> None:
    """``front`` (an HTTP hop's server span, child of the caller's) → gRPC client → gRPC server,
    one trace; no span attribute and no log line holds the query or a document."""
    client = one(found, "erank.v1.Reranker/Rerank", trace.SpanKind.CLIENT)
    server = one(found, "erank.v1.Reranker/Rerank", trace.SpanKind.SERVER)
    assert {trace.format_trace_id(s.context.trace_id) for s in (front, client, server)} == {
        TRACE_ID
    }
    assert trace.format_span_id(parent_of(front)) == CALLER_SPAN
    assert parent_of(client) == front.context.span_id
    assert parent_of(server) == client.context.span_id
    for span in (client, server):
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "erank.v1.Reranker"
        assert span.attributes["rpc.method"] == "Rerank"
        assert span.attributes["rpc.grpc.status_code"] == 0
    assert not any(SECRET in str(s.attributes) or SECRET in s.name for s in found)
    assert SECRET not in caplog_text


def request_ids(records: Sequence[logging.LogRecord], logger: str) -> set[str]:
    """The request ids on ``logger``'s records."""
    return {getattr(r, "request_id", None) or "" for r in records if r.name == logger}
