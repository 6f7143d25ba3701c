"""The one gRPC client for ``erank.v1.Reranker`` (asyncio and blocking), used by every adapter.

One channel per client, reused for every call. Each call has a deadline: the call's ``timeout``,
else the client's (``None`` in either: none). gRPC's own retry policy
retries ``UNAVAILABLE`` only, and gRPC commits to an attempt once the server has answered, so a
call is retried only when no scoring server saw it. Several addresses are balanced with gRPC's
``round_robin`` policy: scale out by adding scoring servers. ``security=`` adds TLS, a client
certificate and a bearer token (:mod:`erank_contract.security`). Each ``erank.v1.Reranker`` call
is a client span and carries the trace context and request id (:mod:`erank_contract.telemetry`).
Imports neither torch nor vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2

from erank_contract.security import ClientSecurity
from erank_contract.telemetry import client_call, end_aio_span, end_rpc_span, start_client_call
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT_S = 30.0
# What the scoring server's health service reports SERVING for once its model answered warm-up.
RERANKER_SERVICE = pb.DESCRIPTOR.services_by_name["Reranker"].full_name
HEALTH_TIMEOUT_S = 5.0
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "erank.v1.Reranker"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


MAX_RECONNECT_BACKOFF_MS = 5000


class UseClientDefault:
    """A call's ``timeout`` left out: the client's own applies (``None`` is "no deadline")."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault()
Timeout = float | None | UseClientDefault


def target_for(addresses: str | Sequence[str]) -> str:
    """A gRPC target for one address or several ``host:port`` IP addresses.

    One address is used as given (``host:port`` or any gRPC target such as ``dns:///svc:50051``,
    whose every A record gets traffic). Several must be IP literals: ``ipv4:a:p,b:p``.
    """
    if isinstance(addresses, str):
        addresses = [a.strip() for a in addresses.split(",") if a.strip()]
    if not addresses:
        raise ValueError("no scoring-server address given")
    if len(addresses) == 1:
        return addresses[0]
    scheme = "ipv6" if all(a.startswith("[") for a in addresses) else "ipv4"
    return f"{scheme}:{','.join(addresses)}"


def _channel_args(
    addresses: str | Sequence[str], max_message_bytes: int
) -> tuple[str, list[tuple[str, object]]]:
    """(target, options) of a channel: both clients connect alike and differ only in I/O.

    Reconnection backoff is capped at :data:`MAX_RECONNECT_BACKOFF_MS` (gRPC's default grows to
    120 s): a scoring server restarted after a long outage gets traffic again within seconds,
    which is what the proxy's circuit breaker probes for after its cool-down."""
    return target_for(addresses), [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def _health_check(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """``grpc.health.v1.Health/Check`` on ``channel`` (the scoring server's own health)."""
    return channel.unary_unary(
        _HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


class _Deadlines:
    """What both clients share besides I/O: each call's deadline. ``timeout`` (seconds) is the
    client's default, ``None`` for none; a call's own ``timeout`` overrides it, ``None`` included
    (``0`` is a deadline already passed, never "the default")."""

    timeout: float | None

    def _timeout(self, timeout: Timeout) -> float | None:
        return self.timeout if isinstance(timeout, UseClientDefault) else timeout


class AsyncRerankerClient(_Deadlines):
    """``async with AsyncRerankerClient("127.0.0.1:50051") as c: await c.rerank(req)``."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
    ) -> None:
        self.timeout = timeout
        self.channel = (security or ClientSecurity()).aio_channel(
            *_channel_args(addresses, max_message_bytes)
        )
        self.stub = pb_grpc.RerankerStub(self.channel)
        self._health_check = _health_check(self.channel)

    async def rerank(
        self, request: pb.RerankRequest, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> pb.RerankResponse:
        with client_call("Rerank") as metadata:
            response: pb.RerankResponse = await self.stub.Rerank(
                request, timeout=self._timeout(timeout), metadata=metadata
            )
        return response

    def stream(
        self, request: pb.RerankRequest, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> grpc.aio.UnaryStreamCall[pb.RerankRequest, pb.RerankEvent]:
        """``RerankStream``: iterate it (``async for``) for one event per document, then the
        whole response; ``cancel()`` stops the engine work still running for it."""
        span, metadata = start_client_call("RerankStream")
        call: grpc.aio.UnaryStreamCall[pb.RerankRequest, pb.RerankEvent]
        call = self.stub.RerankStream(request, timeout=self._timeout(timeout), metadata=metadata)
        call.add_done_callback(lambda done: end_aio_span(span, done))
        return call

    async def model_info(self, timeout: Timeout = USE_CLIENT_DEFAULT) -> pb.ModelInfo:
        with client_call("GetModelInfo") as metadata:
            info: pb.ModelInfo = await self.stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=self._timeout(timeout), metadata=metadata
            )
        return info

    async def health(
        self, service: str = RERANKER_SERVICE, timeout: float = HEALTH_TIMEOUT_S
    ) -> int:
        """``grpc.health.v1`` status of ``service`` (``""``: the whole server); SERVING only
        once the model has loaded and answered its warm-up request. A server that does not
        answer raises ``grpc.aio.AioRpcError``."""
        answer: health_pb2.HealthCheckResponse = await self._health_check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
        return answer.status

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncRerankerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RerankerClient(_Deadlines):
    """Blocking twin of ``AsyncRerankerClient``."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
    ) -> None:
        self.timeout = timeout
        self.channel = (security or ClientSecurity()).channel(
            *_channel_args(addresses, max_message_bytes)
        )
        self.stub = pb_grpc.RerankerStub(self.channel)
        self._health_check = _health_check(self.channel)

    def rerank(
        self, request: pb.RerankRequest, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> pb.RerankResponse:
        with client_call("Rerank") as metadata:
            response: pb.RerankResponse = self.stub.Rerank(
                request, timeout=self._timeout(timeout), metadata=metadata
            )
        return response

    def stream(
        self, request: pb.RerankRequest, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Iterator[pb.RerankEvent]:
        """``RerankStream``: one event per document as it is scored, then the whole response."""
        span, metadata = start_client_call("RerankStream")
        call = self.stub.RerankStream(request, timeout=self._timeout(timeout), metadata=metadata)

        def ended(done: Any) -> None:  # the call, finished: its status is known
            end_rpc_span(span, done.code())

        cast("grpc.Future[Any]", call).add_done_callback(ended)  # the iterator is the call too
        events: Iterator[pb.RerankEvent] = call
        return events

    def model_info(self, timeout: Timeout = USE_CLIENT_DEFAULT) -> pb.ModelInfo:
        with client_call("GetModelInfo") as metadata:
            info: pb.ModelInfo = self.stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=self._timeout(timeout), metadata=metadata
            )
        return info

    def health(self, service: str = RERANKER_SERVICE, timeout: float = HEALTH_TIMEOUT_S) -> int:
        """Blocking ``AsyncRerankerClient.health``; raises ``grpc.RpcError`` when unanswered."""
        answer: health_pb2.HealthCheckResponse = self._health_check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
        return answer.status

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RerankerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
