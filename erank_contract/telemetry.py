"""Traces and request ids on every hop: proxy or REST front → gRPC client → scoring server.

* Traces: OpenTelemetry's API only (``opentelemetry-api``). Without an SDK, or with one that no
  ``OTEL_*`` variable configures, every span is a no-op costing well under a microsecond.
  :func:`setup_tracing` (called by ``erank serve``, ``erank rest`` and ``erank proxy``) installs the
  SDK's ``TracerProvider`` with the exporter the standard variables name. The W3C trace context
  travels in HTTP headers and gRPC metadata (``traceparent``, ``tracestate``), so a caller's trace
  goes on through every hop.
* Request ids: the HTTP hops take ``X-Request-Id`` from the caller (when it is short and plain,
  see :data:`REQUEST_ID_PATTERN`; else they make one), answer it in the same header and send it
  on in the gRPC metadata ``x-request-id``; the scoring server makes one when a call has none.
  :class:`RequestIdFilter` stamps it (and the trace id) on every log record made while the
  request is handled; ``--log-format json`` writes those records as JSON lines.

Neither spans nor log lines ever hold query or document text: methods, paths, statuses, ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Literal, TextIO

import grpc
from opentelemetry import propagate, trace

from erank_contract.v1 import reranker_pb2 as pb

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_METADATA = "x-request-id"
# What a caller's id may be: short, and nothing that could forge a log line or break a header.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
RPC_SERVICE = pb.DESCRIPTOR.services_by_name["Reranker"].full_name
LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

tracer = trace.get_tracer("erank")
_ENDING: set[asyncio.Task[None]] = set()  # tasks that end streams' spans, kept until done
# The request being handled by this task (None: none, e.g. start-up lines).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "erank_request_id", default=None
)


def accept_request_id(given: str | None) -> str:
    """The caller's id when it matches :data:`REQUEST_ID_PATTERN`, else a new random one."""
    if given is not None and REQUEST_ID_PATTERN.fullmatch(given):
        return given
    return uuid.uuid4().hex


def rpc_attributes(method: str) -> dict[str, str]:
    """OpenTelemetry's RPC attributes of ``erank.v1.Reranker/<method>``."""
    return {"rpc.system": "grpc", "rpc.service": RPC_SERVICE, "rpc.method": method}


def end_rpc_span(span: trace.Span, code: grpc.StatusCode) -> None:
    """Record the call's status on ``span`` (an error unless OK) and end it."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(trace.StatusCode.ERROR, code.name)
    span.end()


def end_aio_span(span: trace.Span, call: grpc.aio.Call) -> None:
    """A done callback of an asyncio call: its status can only be awaited, so a task ends it."""

    async def end() -> None:
        end_rpc_span(span, await call.code())

    task = asyncio.ensure_future(end())
    _ENDING.add(task)
    task.add_done_callback(_ENDING.discard)


def start_client_call(method: str) -> tuple[trace.Span, tuple[tuple[str, str], ...]]:
    """A client span for ``method`` (child of the current one) and the metadata that carries it
    and the current request id to the server; end the span with :func:`end_rpc_span`."""
    span = tracer.start_span(
        f"{RPC_SERVICE}/{method}", kind=trace.SpanKind.CLIENT, attributes=rpc_attributes(method)
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    current = request_id.get()
    if current is not None:
        carrier[REQUEST_ID_METADATA] = current
    return span, tuple(carrier.items())


@contextlib.contextmanager
def client_call(method: str) -> Iterator[tuple[tuple[str, str], ...]]:
    """A unary call traced from start to answer; yields the metadata to send with it."""
    span, metadata = start_client_call(method)
    try:
        yield metadata
    except grpc.RpcError as err:
        code = getattr(err, "code", None)  # every error a call raises has it
        end_rpc_span(span, code() if callable(code) else grpc.StatusCode.UNKNOWN)
        raise
    except BaseException:
        end_rpc_span(span, grpc.StatusCode.CANCELLED)
        raise
    end_rpc_span(span, grpc.StatusCode.OK)


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, or None outside any trace (a caller's
    ``traceparent`` counts, recorded or not)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class RequestIdFilter(logging.Filter):
    """Stamps ``request_id`` (``-`` outside a request) on each record, and ``trace_id`` and
    ``span_id`` inside a trace. Put it on a handler: it sees every logger's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        ids = trace_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


def log_handler(log_format: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) text lines with the request id, or one JSON
    object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    ``request_id``, ``trace_id`` and ``span_id`` in a trace, ``exc_info`` for a traceback."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        names = {"levelname": "level", "name": "logger"}
        handler.setFormatter(
            JsonFormatter([*names, "message"], rename_fields=names, timestamp="time")
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(log_format: LogFormat = "text", level: str | int = logging.INFO) -> None:
    """The root logger writes through :func:`log_handler` only (what ``logging.basicConfig``
    with ``force=True`` does)."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format)], force=True)


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    """The span exporters the standard variables ask for; none unless one of them is set (an
    unset OTEL_TRACES_EXPORTER would mean ``otlp`` to a collector on localhost that a plain
    ``erank serve`` has not got)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    given = env.get("OTEL_TRACES_EXPORTER") or ("otlp" if endpoint else "")
    names = [n.strip() for n in given.split(",") if n.strip() and n.strip() != "none"]
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    otlp = "otlp_proto_http" if protocol.startswith("http") else "otlp_proto_grpc"
    return [otlp if n == "otlp" else n for n in names]


def setup_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install an SDK ``TracerProvider`` exporting batches of spans where the standard variables
    say: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``), ``OTEL_EXPORTER_OTLP_*``
    (endpoint, protocol, headers: read by the exporter itself), ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` (``service_name`` when neither names the service),
    ``OTEL_TRACES_SAMPLER``. False, and tracing stays a no-op, when none asks for traces or the
    SDK is not installed (``pip install 'erank-search[otel]'``)."""
    names = _exporter_names(os.environ if env is None else env)
    if not names:
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for traces: pip install 'erank-search[otel]'")
        return False
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for name in names:
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("OTEL_TRACES_EXPORTER: no span exporter %r is installed", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(next(iter(found)).load()()))
    trace.set_tracer_provider(provider)
    log.info("tracing to %s as %s", ", ".join(names), resource.attributes.get(SERVICE_NAME))
    return True
