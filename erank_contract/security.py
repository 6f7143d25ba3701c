"""How a client reaches a protected scoring server: TLS, a client certificate, a bearer token.

One ``ClientSecurity`` value serves every adapter: the gRPC client's ``security=`` argument,
the proxy's ``scoring_server:`` config section, the wrappers' ``security=`` argument and the
``--reranker-*`` flags of ``erank rest`` / ``erank proxy`` / ``erank eval``. The server side
(what these must match) is erank/security.py.

The token goes on every call as ``authorization: Bearer <token>`` metadata, added by a channel
interceptor, so calls made on the client's channel directly (health checks) carry it too. It is
a ``SecretStr``: printing the settings shows ``**********``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"{field}: cannot read {path}: {err.strerror}") from err


class ClientSecurity(BaseModel):
    """TLS and token options of a connection to the scoring server (all off by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls: bool = Field(
        default=False, description="TLS with the system's trusted CAs (implied by the rest)"
    )
    tls_ca: Path | None = Field(default=None, description="PEM CA that signed the server's cert")
    tls_cert: Path | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_server_name: str | None = Field(
        default=None, description="name to check the server's certificate against"
    )
    token: SecretStr | None = Field(default=None, description="bearer token")
    token_file: Path | None = Field(default=None, description="file whose first line is it")

    @model_validator(mode="after")
    def _pairs(self) -> ClientSecurity:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(
            v is not None for v in (self.tls_ca, self.tls_cert, self.tls_server_name)
        )

    def bearer_token(self) -> str | None:
        """The token given, or the first line of ``token_file``."""
        if self.token_file is not None:
            lines = _read(self.token_file, "token_file").decode().strip().splitlines()
            if not lines or not lines[0].strip():
                raise ValueError(f"token_file: {self.token_file} holds no token")
            return lines[0].strip()
        return self.token.get_secret_value() if self.token is not None else None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS channel credentials, or ``None`` for plaintext."""
        if not self.uses_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca, "tls_ca") if self.tls_ca else None,
            private_key=_read(self.tls_key, "tls_key") if self.tls_key else None,
            certificate_chain=_read(self.tls_cert, "tls_cert") if self.tls_cert else None,
        )

    def channel_options(self) -> list[tuple[str, object]]:
        if self.tls_server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.tls_server_name)]

    def aio_channel(self, target: str, options: Sequence[tuple[str, object]]) -> grpc.aio.Channel:
        """An asyncio channel to ``target`` with these protections."""
        options = [*options, *self.channel_options()]
        token = self.bearer_token()
        interceptors = _aio_bearer(token) if token else None
        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(target, options, interceptors=interceptors)
        return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)

    def channel(self, target: str, options: Sequence[tuple[str, object]]) -> grpc.Channel:
        """A blocking channel to ``target`` with these protections."""
        options = [*options, *self.channel_options()]
        credentials = self.credentials()
        if credentials is None:
            channel = grpc.insecure_channel(target, options)
        else:
            channel = grpc.secure_channel(target, credentials, options)
        token = self.bearer_token()
        return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


def _with_token(details: Any, token: str, make: Callable[..., Any]) -> Any:
    """``details`` with ``authorization: Bearer <token>`` added to its metadata."""
    metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
    return make(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _AioBearer:
    """Adds the bearer token to the calls of an asyncio channel (one subclass per call kind:
    grpc.aio files an interceptor under the first kind it implements only)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        return _with_token(details, self._token, grpc.aio.ClientCallDetails)


class _AioBearerUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioBearerStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def _aio_bearer(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors adding ``token`` to unary and server-streaming calls (the proto's kinds)."""
    return [_AioBearerUnary(token), _AioBearerStream(token)]


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to every call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        return _with_token(details, self._token, _CallDetails)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)
