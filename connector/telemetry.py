"""The HTTP hops' request context (REST front and proxy): a server span, a request id, a log line.

:func:`request_context` goes first among an app's middlewares: it continues the caller's trace
from ``traceparent`` (or starts one), takes the caller's ``X-Request-Id`` or makes one, and runs
the handler inside both, so the scoring call it makes is a child span carrying the same id
(:mod:`erank_contract.telemetry`). :func:`answer_request_id` puts the id on every answer,
streamed ones included. One line per request on the logger ``erank.access``: client address,
method, path (never the query string: a search's ``q=`` is the user's text), status, time.
:data:`SERVER_LOG` is both servers' aiohttp logger, with unparsable requests as one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from opentelemetry import propagate, trace

from erank_contract.telemetry import REQUEST_ID_HEADER, accept_request_id, request_id, tracer
from erank_contract.vocabulary import preview

log = logging.getLogger("erank.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's name for it)


class Observer(Protocol):
    """What else is told each request's outcome (the app's metrics), from the same status and
    clock as its access line and span: one measurement, three reports."""

    def request_started(self, request: web.Request) -> None: ...

    def request_finished(self, request: web.Request, status: int, seconds: float) -> None: ...


_CATCH_ALL = "/{tail"  # the proxy's one route: no route worth naming


def _route(request: web.Request) -> str | None:
    """The matched route's template (``/v1/rerank``), None for the proxy's catch-all."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else None
    return None if template is None or template.startswith(_CATCH_ALL) else template


def request_context(observer: Observer | None = None) -> Middleware:
    """The middleware that gives each request its span, request id and access line, and tells
    ``observer`` (see the module doc). A request whose client went away before the answer is
    499 in all of them."""

    @web.middleware
    async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        token = request_id.set(given)
        route = _route(request)
        began = time.perf_counter()
        status = 500
        if observer is not None:
            observer.request_started(request)
        with tracer.start_as_current_span(
            f"{request.method} {route}" if route else request.method,
            context=propagate.extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes=_attributes(request, route),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = await handler(request)
                status = response.status
                if not response.prepared:  # else answer_request_id set it when it was sent
                    response.headers[REQUEST_ID_HEADER] = given
                return response
            except web.HTTPException as exc:
                status = exc.status
                exc.headers[REQUEST_ID_HEADER] = given
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED
                raise
            finally:
                seconds = time.perf_counter() - began
                _report(request, span, status, seconds)
                if observer is not None:
                    observer.request_finished(request, status, seconds)
                request_id.reset(token)

    return context


def _attributes(request: web.Request, route: str | None) -> dict[str, str | int]:
    """The server span's HTTP attributes (OpenTelemetry's semantic conventions)."""
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    if route is not None:
        attributes["http.route"] = route
    return attributes


def _report(request: web.Request, span: trace.Span, status: int, seconds: float) -> None:
    """The span's status and the access line of a finished request."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)
    path = preview(request.path)
    millis = seconds * 1000
    log.info("%s %s %s %d %.1f ms", request.remote, request.method, path, status, millis)


async def answer_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on an answer streamed while the handler runs
    (the proxy's pass-through); :func:`request_context` sets it on the others."""
    current = request_id.get()
    if current is not None:
        response.headers[REQUEST_ID_HEADER] = current


def instrument(app: web.Application, observer: Observer | None = None) -> None:
    """Give ``app`` the request context: first middleware (so aiohttp's own refusals count with
    their status), ``observer`` told of every request, and the id on every answer."""
    app.middlewares.insert(0, request_context(observer))
    app.on_response_prepare.append(answer_request_id)


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server logger, but a request that cannot be parsed as HTTP (a bad request line
    or header, a ``Content-Encoding`` it cannot decode, a body that does not decode) is one
    WARNING line: aiohttp answers it 400 and would log it at ERROR with a traceback, so any
    client could fill the log with what reads like a server bug. Anything else (a handler's
    exception: a bug) keeps its traceback."""

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, (HttpProcessingError, web.RequestPayloadError)):
            why = " ".join(str(exc_info).split())[:200]
            self.warning(f"{msg}: %s", *args, why)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)


SERVER_LOG = _ServerLog(logging.getLogger("aiohttp.server"))
