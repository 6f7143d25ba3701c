"""The REST front's aiohttp application: routes, bearer token, JSON errors, serving.

aiohttp is the one asyncio HTTP stack of the connector (the proxy and the Elasticsearch client
use it too). The gRPC client is opened in the app's cleanup context, i.e. on the event loop that
serves it, and closed with it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from aiohttp import hdrs, web
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from connector.budget import Overhead
from connector.metrics import RestMetrics
from connector.rest.cohere import (
    ErankOptions,
    RerankBody,
    RerankBodyV2,
    rerank_json,
    rerank_v2_json,
)
from connector.rest.encoding import BodyError, read_body
from connector.rest.errors import error_response, grpc_error, json_response, validation_error
from connector.rest.tei import TeiBody, rerank_tei_json
from connector.telemetry import SERVER_LOG, instrument
from erank_contract.client import DEFAULT_TIMEOUT_S, AsyncRerankerClient
from erank_contract.security import ClientSecurity
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES, preview, scoring_error

log = logging.getLogger("erank.rest")

CLIENT = web.AppKey("client", AsyncRerankerClient)
TOKEN = web.AppKey("token", bytes)
MAX_BODY = web.AppKey("max_body_bytes", int)
METRICS = web.AppKey("metrics", RestMetrics)
OVERHEAD = web.AppKey("overhead", Overhead)
TIMEOUT_S = web.AppKey("timeout_s", float)
HEALTH_PATH = "/health"  # open without the token: load balancers and probes send none
_SERVING = health_pb2.HealthCheckResponse.SERVING
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


Body = TypeVar("Body", bound=ErankOptions)


async def _score(
    request: web.Request, body: ErankOptions, began: float
) -> pb.RerankResponse | web.Response:
    """The gRPC answer for ``body`` within its budget, or the error response for its failure.

    The budget (``budget_ms``, else the front's ``--timeout``) counts from ``began``; with
    ``on_budget: cut`` the server is told what remains of it less the front's measured overhead
    (:mod:`connector.budget`), and the round trip of the call is measured for the next ones."""
    overhead = request.app[OVERHEAD]
    budget_ms = body.budget_ms or request.app[TIMEOUT_S] * 1000
    spent_ms = (time.perf_counter() - began) * 1000
    deadline = overhead.deadline(budget_ms, spent_ms, body.on_budget, body.finish_in_background)
    sent = time.perf_counter()
    try:
        answer = await request.app[CLIENT].rerank(
            deadline.apply(body.to_proto()), timeout=deadline.timeout_s
        )
    except grpc.aio.AioRpcError as err:
        request.app[METRICS].scoring_failures.labels(scoring_error(err.code())[1]).inc()
        return grpc_error(err, body.rest_field)
    overhead.called((time.perf_counter() - sent) * 1000, answer)
    return answer


def _route(model: type[Body], shape: Callable[[pb.RerankResponse, Body], Any], doc: str) -> Handler:
    """A rerank route: ``model``'s body validated (400), scored (the gRPC failure's status:
    503, 504, 429, 400, 502), answered as ``shape`` makes it (200); the time from the scores'
    arrival to the JSON is measured as the front's assembly overhead."""

    async def handle(request: web.Request) -> web.Response:
        began = time.perf_counter()
        try:
            body = model.model_validate_json(await read_body(request, request.app[MAX_BODY]))
        except BodyError as err:
            return error_response(err.status, err.kind, str(err))
        except ValidationError as err:
            return validation_error(err)
        answer = await _score(request, body, began)
        if isinstance(answer, web.Response):
            return answer
        arrived = time.perf_counter()
        response = json_response(shape(answer, body))
        request.app[OVERHEAD].assembled((time.perf_counter() - arrived) * 1000)
        return response

    handle.__doc__ = doc
    return handle


rerank_v1 = _route(
    RerankBody,
    lambda answer, body: rerank_json(answer, body.documents if body.return_documents else None),
    "``POST /v1/rerank``.",
)
rerank_v2 = _route(RerankBodyV2, lambda answer, _: rerank_v2_json(answer), "``POST /v2/rerank``.")
rerank_tei = _route(TeiBody, rerank_tei_json, "``POST /rerank``.")


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 only while the scoring server's gRPC health says SERVING, so a load
    balancer or an engine's validation call never reaches a loading or dead server."""
    try:
        status = await request.app[CLIENT].health()
    except grpc.aio.AioRpcError as err:
        status, kind = scoring_error(err.code())
        return error_response(status, kind, f"scoring server: {err.code().name}: {err.details()}")
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return json_response({"status": name}, 200 if status == _SERVING else 503)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (unknown path, wrong method, body too large, a body cut short)
    in the front's error JSON; the path is quoted through ``preview``, never whole. Bodies are
    decoded by the front itself (connector/rest/encoding.py). The workbench (an app with
    ``MAX_BODY`` set) uses it too."""
    try:
        return await handler(request)
    except web.RequestPayloadError as exc:  # e.g. chunked framing that is not
        why = " ".join(str(getattr(exc.__cause__, "message", exc)).split())[:200]
        refusal = error_response(400, "parse_exception", f"request body cannot be read: {why}")
        refusal.force_close()  # the rest of the body cannot be read past either
        return refusal
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = f"{request.method} {preview(request.path)}: {exc.reason}"
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            reason += f"; the limit is {request.app[MAX_BODY]} bytes"
        allow = {k: v for k, v in exc.headers.items() if k == hdrs.ALLOW}
        return error_response(exc.status, "http_error", reason, headers=allow)


def token_refusal(request: web.Request, token: bytes) -> web.Response | None:
    """None when ``request`` carries ``Authorization: Bearer <token>`` (compared in constant
    time, so timing tells nothing about it), else the 401 to answer (the workbench's API shares
    this check)."""
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented, token):
        return None
    return error_response(
        401,
        "security_exception",
        "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'",
        headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="erank"'},
    )


@web.middleware
async def _bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token configured, every route but ``/health`` needs ``Authorization: Bearer
    <token>`` (:func:`token_refusal`)."""
    token = request.app.get(TOKEN)
    if token is None or request.path == HEALTH_PATH:
        return await handler(request)
    refusal = token_refusal(request, token)
    return refusal if refusal is not None else await handler(request)


def create_app(
    reranker: str | Sequence[str],
    timeout: float = DEFAULT_TIMEOUT_S,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    security: ClientSecurity | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> web.Application:
    """The app for the scoring server(s) at ``reranker`` (``host:port``, or several), reached
    with ``security`` (TLS, client certificate, token; :mod:`erank_contract.security`).

    ``token`` (none or empty: no authentication) guards every route but ``/health``. A body
    over ``max_body_bytes`` (default: the gRPC message limit) is a 413. With ``metrics_port``,
    Prometheus ``/metrics`` (connector/metrics.py) on ``metrics_host`` (default loopback).
    """
    metrics = RestMetrics()
    app = web.Application(
        middlewares=[json_errors, _bearer_token],
        client_max_size=max_body_bytes,
        handler_args={"auto_decompress": False},  # the front decodes: connector/rest/encoding.py
    )
    instrument(app, metrics)  # first middleware: span, request id, access line, metrics
    app[MAX_BODY] = max_body_bytes
    app[METRICS] = metrics
    app[OVERHEAD] = Overhead()
    app[TIMEOUT_S] = timeout
    metrics.serve_with(app, metrics_host, metrics_port)
    if token:
        app[TOKEN] = token.encode()

    async def grpc_client(app: web.Application) -> AsyncIterator[None]:
        async with AsyncRerankerClient(reranker, timeout=timeout, security=security) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(grpc_client)
    app.router.add_post("/v1/rerank", rerank_v1)
    app.router.add_post("/v2/rerank", rerank_v2)
    app.router.add_post("/rerank", rerank_tei)
    app.router.add_get(HEALTH_PATH, health)
    return app


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` on the running loop; yields its base URL (``port=0``: a free port). The
    server and the app's gRPC client close on exit."""
    runner = web.AppRunner(app, access_log=None, logger=SERVER_LOG, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


def run(
    reranker: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    timeout: float = DEFAULT_TIMEOUT_S,
    token: str | None = None,
    security: ClientSecurity | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (what ``erank rest`` does); logs one line per request with
    its request id (connector/telemetry.py: method, path, status, time; never a header)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log.info(
        "erank rest on http://%s:%d -> scoring server %s (bearer token %s)",
        host,
        port,
        reranker,
        "required" if token else "off",
    )
    printer: Callable[..., Any] = log.info
    app = create_app(
        reranker,
        timeout,
        token,
        security=security,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    web.run_app(
        app,
        host=host,
        port=port,
        print=printer,
        access_log=None,
        logger=SERVER_LOG,
        handler_cancellation=True,  # a client gone: its scoring call (and engine work) ends
    )
