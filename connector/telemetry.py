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

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry import propagate, trace

from erank_contract.telemetry import REQUEST_ID_HEADER, accept_request_id, request_id, tracer
from erank_contract.vocabulary import preview

log = logging.getLogger("erank.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CATCH_ALL = "/{tail"  # the proxy's one route: no route worth naming


def _route(request: web.Request) -> str | None:
    """The matched route's template (``/v1/rerank``), None for the proxy's catch-all."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else None
    return None if template is None or template.startswith(_CATCH_ALL) else template


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Span, request id and access line around ``handler`` (see the module doc)."""
    given = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
    token = request_id.set(given)
    route = _route(request)
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    if route is not None:
        attributes["http.route"] = route
    began = time.perf_counter()
    status = 500
    with tracer.start_as_current_span(
        f"{request.method} {route}" if route else request.method,
        context=propagate.extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
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
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)
            millis = (time.perf_counter() - began) * 1000
            path = preview(request.path)
            log.info("%s %s %s %d %.1f ms", request.remote, request.method, path, status, millis)
            request_id.reset(token)


async def answer_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on an answer streamed while the handler runs
    (the proxy's pass-through); :func:`request_context` sets it on the others."""
    current = request_id.get()
    if current is not None:
        response.headers[REQUEST_ID_HEADER] = current


def instrument(app: web.Application) -> None:
    """Give ``app`` the request context: first middleware, and the id on every answer."""
    app.middlewares.insert(0, request_context)
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
