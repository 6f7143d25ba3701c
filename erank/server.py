"""The scoring server process: gRPC server, health, reflection, engine start and warm-up.

The gRPC port opens first, with ``grpc.health.v1`` reporting NOT_SERVING, so probes get an
answer while the model loads; it turns SERVING only after the engine has loaded *and* answered a
warm-up request. Reflection is on, so ``grpcurl -plaintext HOST:PORT list`` works out of the box.
With ``metrics_port`` set, Prometheus metrics (erank/metrics.py) are served at
``http://METRICS_HOST:METRICS_PORT/metrics``, loopback unless ``metrics_host`` says otherwise
(they tell load and cache contents to whoever can reach them). TLS, mutual TLS and the bearer
token: erank/security.py. Each call's span, request id and log line: erank/tracing.py. How it
stops (drain, grace, engine death): erank/lifecycle.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from erank import lifecycle, listen
from erank.admission import Admission
from erank.backends import Backend, create_backend
from erank.model_source import ModelUnavailable, check_model
from erank.scorer import Scorer
from erank.security import (
    BearerTokenInterceptor,
    SecurityFileError,
    read_token,
    server_credentials,
)
from erank.service import RerankerService
from erank.settings import ServerSettings
from erank.tracing import RequestContextInterceptor
from erank.wire import add_reranker_service
from erank_contract.metrics import MetricsServer
from erank_contract.v1 import reranker_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reranker"].full_name
# Beside each text of a request: a document's id, score and tags (ids are not limited: room for
# a long one), and the request's other fields (a preset name, numbers).
TEXT_OVERHEAD_BYTES = 1024
REQUEST_OVERHEAD_BYTES = 64 * 1024
# Calls admission does not count (health, reflection, GetModelInfo) get this long at the end.
STOP_GRACE_S = 1.0
WARMUP = pb.RerankRequest(query="warm-up", documents=[pb.Document(id="warm-up", text="warm-up")])
WARMUP_MANY = pb.RerankRequest(
    query="warm-up", documents=[pb.Document(id=f"w{i}", text=f"warm-up {i}") for i in range(8)]
)


class ScoringServer:
    """A running gRPC server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.service = RerankerService(Admission.from_settings(settings))
        self.health = health.aio.HealthServicer()
        token = read_token(
            settings.token.get_secret_value() if settings.token else None, settings.token_file
        )
        interceptors: list[grpc.aio.ServerInterceptor] = [RequestContextInterceptor()]
        if token:
            interceptors.append(BearerTokenInterceptor(token))
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", max_request_bytes(settings)),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                *listen.OPTIONS,
            ],
        )
        add_reranker_service(self.service, self.server, settings.max_documents)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        credentials = server_credentials(
            settings.tls_cert, settings.tls_key, settings.tls_client_ca
        )
        self.port = listen.bind(self.server, settings.host, settings.port, credentials)
        self._owned: Backend | None = None
        self.metrics: MetricsServer | None = None

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self, backend: Backend | None = None) -> None:
        """Open the port (NOT_SERVING), then load the engine and warm it up.

        A ``backend`` passed in is shared, not owned: ``stop`` leaves it running.
        """
        await self._set_health(False)
        await self.server.start()
        if self.settings.metrics_port is not None:
            self.metrics = MetricsServer(self.settings.metrics_host, self.settings.metrics_port)
            log.info("Prometheus metrics on %s:%d", self.metrics.host, self.metrics.port)
        log.info(
            "listening on %s:%d (%s); loading %s",
            self.settings.host,
            self.port,
            _protection(self.settings),
            self.settings.model,
        )
        if backend is None:
            # Engine start takes seconds to minutes: keep the loop free to answer health checks.
            await asyncio.to_thread(check_model, self.settings.model, self.settings.revision)
            backend = await lifecycle.in_daemon_thread(lambda: create_backend(self.settings))
            self._owned = backend
        scorer = Scorer(backend, self.settings)
        await scorer.rerank(WARMUP)
        scorer.cache.clear()  # the warm-up is not a user's score
        # Cut at once and closed, one document and then several: seeds the closing margin.
        for request in (WARMUP, WARMUP_MANY):
            await scorer.rerank(request, time.monotonic() + scorer.closing.margin(1))
            scorer.cache.clear()
        self.service.scorer = scorer
        # What loading made (the engine's client, torch, transformers: millions of objects)
        # lives as long as the process. Scanned by every full collection, it held the loop, and
        # the refusals of a burst behind it, for 0.5 s and more; frozen, it is out of sight.
        gc.freeze()
        await self._set_health(True)
        log.info("SERVING %s on port %d", self.settings.model, self.port)

    @property
    def backend(self) -> Backend | None:
        return self.service.scorer.backend if self.service.scorer else None

    async def shutdown(self) -> None:
        """NOT_SERVING while still serving for ``shutdown_drain_s``; then refuse new calls
        (UNAVAILABLE) while admitted ones finish, for ``shutdown_grace_s`` at most; then stop."""
        s = self.settings
        await self._set_health(False)
        log.info("NOT_SERVING; still serving for %g s", s.shutdown_drain_s)
        await asyncio.sleep(s.shutdown_drain_s)
        admission = self.service.admission
        admission.close()
        log.info(
            "refusing new calls; %d in flight get %g s", admission.requests, s.shutdown_grace_s
        )
        if not await admission.idle(s.shutdown_grace_s):
            log.warning("cancelling %d calls still in flight", admission.requests)
        await self.stop(STOP_GRACE_S)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, give in-flight calls ``grace`` seconds (default
        ``shutdown_grace_s``) to finish, then stop an owned engine. Safe to call twice."""
        await self.health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_s if grace is None else grace
        await self.server.stop(grace)
        if self.service.scorer is not None:
            await self.service.scorer.close()
        self.service.scorer = None
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        if self._owned is not None:
            self._owned.shutdown()
            self._owned = None


def max_request_bytes(settings: ServerSettings) -> int:
    """The largest request the limits let through, capped by ``max_message_bytes``: gRPC refuses
    a bigger one (RESOURCE_EXHAUSTED) before it is read into Python. ``max_documents``
    documents and a query and an instruction of ``max_text_chars`` characters, 4 bytes each at
    worst in UTF-8, with room for each document's id and score and the other fields."""
    texts = settings.max_documents + 2
    need = texts * (settings.max_text_chars * 4 + TEXT_OVERHEAD_BYTES) + REQUEST_OVERHEAD_BYTES
    return min(settings.max_message_bytes, need)


def _protection(settings: ServerSettings) -> str:
    """How the port is protected, for the start-up log line (never the token itself)."""
    tls = "plaintext"
    if settings.tls_cert is not None:
        tls = "mutual TLS" if settings.tls_client_ca is not None else "TLS"
    token = settings.token is not None or settings.token_file is not None
    return f"{tls}, {'bearer token required' if token else 'no token'}"


@contextlib.asynccontextmanager
async def running_server(
    settings: ServerSettings, backend: Backend | None = None
) -> AsyncIterator[ScoringServer]:
    """Start a server for ``settings`` (on a shared ``backend`` if given); stop it on exit."""
    server = ScoringServer(settings)
    try:
        await server.start(backend)
        yield server
    finally:
        await server.stop()


async def serve_forever(settings: ServerSettings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down (what ``erank serve`` does).

    If the engine dies first, shut down the same way and exit with status 1 (``SystemExit``).
    A TLS or token file that cannot be read, or a port it cannot bind, ends it at once, before the
    engine starts, with one line naming the setting and the file, or the port.
    """
    with lifecycle.stop_signal() as stop:
        await _serve_until_stopped(settings, stop)


async def _serve_until_stopped(settings: ServerSettings, stop: asyncio.Event) -> None:
    try:
        server = ScoringServer(settings)
    except (SecurityFileError, listen.PortUnavailable) as err:
        raise SystemExit(f"erank serve: {err}") from None
    try:
        try:
            started = await lifecycle.unless_stopped(asyncio.ensure_future(server.start()), stop)
        except ModelUnavailable as err:
            raise SystemExit(f"erank serve: {err}") from None
        if not started:
            log.info("stopped while loading the model")
            lifecycle.end_child_processes()
            return
        died = await lifecycle.wait_for_stop(stop, server.backend)
        if died is not None:
            log.error("the scoring engine died (%s); shutting down", died)
        await server.shutdown()
    finally:
        await server.stop(0)  # at once, if starting failed or the shutdown was interrupted
    if died is not None:
        raise SystemExit(f"erank serve: the scoring engine died: {died}")
