"""Who may call the scoring server: TLS, mutual TLS and a bearer token on gRPC.

* TLS: ``tls_cert`` + ``tls_key`` (PEM files) make the port TLS-only; a plaintext client cannot
  complete a handshake, so its calls end ``UNAVAILABLE``.
* Mutual TLS: ``tls_client_ca`` (PEM) additionally requires every client to present a
  certificate signed by that CA; no certificate, or one from another CA, fails the handshake.
* Bearer token: ``token`` (or ``token_file``) makes every ``erank.v1.Reranker`` call carry the
  metadata ``authorization: Bearer <token>``; a missing or wrong one ends the call
  ``UNAUTHENTICATED`` before any work. The comparison is ``hmac.compare_digest`` (its time does
  not tell a caller how much of a guess was right) and the token is never logged.

Health checks and server reflection stay open: Kubernetes probes and load balancers carry no
token, and neither service reveals anything beyond the service names. Without TLS the token
crosses the network in clear text: give both, or keep the port on loopback.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

# Methods of these services need no token (probes and tooling carry none).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class SecurityFileError(ValueError):
    """A file a security setting names cannot be read (or holds no token); the message is one
    line for the operator, naming the setting and the file."""


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise SecurityFileError(f"{field}: cannot read {path}: {err.strerror}") from err


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS credentials for the port (``None``: plaintext); with ``client_ca``, mutual TLS."""
    if cert is None or key is None:
        return None
    pair = (_read(key, "tls_key"), _read(cert, "tls_cert"))
    root = _read(client_ca, "tls_client_ca") if client_ca is not None else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=root, require_client_auth=root is not None
    )


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """The token given, or the first line of ``token_file`` (a mounted secret)."""
    if token_file is not None:
        lines = _read(token_file, "token_file").decode().strip().splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise SecurityFileError(f"token_file: {token_file} holds no token")
    return token or None


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that ends the call ``UNAUTHENTICATED``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - abort raises; this only makes it an async generator

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    streaming = handler.response_streaming
    return kinds[handler.request_streaming, streaming](
        refuse_stream if streaming else refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` (open services excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        given = [v for k, v in details.invocation_metadata or () if k == "authorization"]
        if not given:
            return _refusal(handler, "missing authorization metadata: Bearer <token>")
        value = given[0].encode() if isinstance(given[0], str) else given[0]
        if not hmac.compare_digest(value, self._expected):
            return _refusal(handler, "wrong bearer token")
        return handler
