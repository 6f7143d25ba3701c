"""Each ``erank.v1.Reranker`` call on the scoring server: a server span, a request id, a log line
and its Prometheus count and duration (erank/metrics.py), all from one status and one clock.

The span continues the caller's trace from the ``traceparent`` metadata (the adapters send it,
see :mod:`erank_contract.telemetry`); the request id is the caller's ``x-request-id`` or a new
one, and every log record made while the call runs carries it. One line per call on the logger
``erank.rpc``: method, status, milliseconds. Health checks and reflection are left alone: probes
would bury the calls that matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from opentelemetry import propagate, trace

from erank import metrics
from erank_contract.telemetry import (
    REQUEST_ID_METADATA,
    RPC_SERVICE,
    accept_request_id,
    end_rpc_span,
    request_id,
    rpc_attributes,
    tracer,
)

log = logging.getLogger("erank.rpc")
_PREFIX = f"/{RPC_SERVICE}/"
# gRPC cancels a handler when its deadline passes, by its own clock: a few ms still "remain".
_DEADLINE_SLACK_S = 0.05


@contextlib.contextmanager
def _served(
    method: str, metadata: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> Iterator[None]:
    """The call's span and request id around its handler; its status and time logged after."""
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            carrier.setdefault(key, value)
    parent = propagate.extract(carrier)
    token = request_id.set(accept_request_id(carrier.get(REQUEST_ID_METADATA)))
    span = tracer.start_span(
        f"{RPC_SERVICE}/{method}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=rpc_attributes(method),
    )
    began = time.perf_counter()
    code = grpc.StatusCode.OK
    with trace.use_span(span, record_exception=False, set_status_on_exception=False):
        try:
            yield
            code = context.code() or grpc.StatusCode.OK
        except (asyncio.CancelledError, GeneratorExit):
            code = _ended(context)  # the caller went away or its deadline passed
            raise
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN  # set by abort; else a bug
            raise
        finally:
            seconds = time.perf_counter() - began
            end_rpc_span(span, code)
            metrics.observe_call(method, code, seconds)
            log.info("%s %s %.1f ms", method, code.name, seconds * 1000)
            request_id.reset(token)


def _ended(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """Why gRPC cancelled a call's handler: its deadline passed (DEADLINE_EXCEEDED, as its
    caller sees it), or the caller cancelled it or went away (CANCELLED)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= _DEADLINE_SLACK_S:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _traced(handler: grpc.RpcMethodHandler, method: str, metadata: Any) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour run inside :func:`_served` (unary and server-streaming:
    the kinds ``erank.v1.Reranker`` has)."""
    if handler.unary_unary is not None:
        unary: Callable[..., Any] = handler.unary_unary  # an aio server's: a coroutine

        async def answer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with _served(method, metadata, context):
                return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            answer, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        stream: Callable[..., Any] = handler.unary_stream  # an aio server's: async generator

        async def events(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            with _served(method, metadata, context):
                async for event in stream(request, context):
                    yield event

        return grpc.unary_stream_rpc_method_handler(
            events, handler.request_deserializer, handler.response_serializer
        )
    return handler


class RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Traces, ids, logs and counts every ``erank.v1.Reranker`` call (see the module doc). First
    in the server's interceptors, so calls refused by the token check are in all four too."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(_PREFIX):
            return handler
        return _traced(handler, details.method[len(_PREFIX) :], details.invocation_metadata)
