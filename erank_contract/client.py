"""The one gRPC client for ``erank.v1.Reranker`` (asyncio and blocking), used by every adapter.

One channel per client, reused for every call. Each call has a deadline. gRPC's own retry policy
retries ``UNAVAILABLE`` only, and gRPC commits to an attempt once the server has answered, so a
call is retried only when no scoring server saw it. Several addresses are balanced with gRPC's
``round_robin`` policy: scale out by adding scoring servers. ``security=`` adds TLS, a client
certificate and a bearer token (:mod:`erank_contract.security`). Imports neither torch nor vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from erank_contract.security import ClientSecurity
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc
from erank_contract.vocabulary import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT_S = 30.0
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


def _options(max_message_bytes: int) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


class AsyncRerankerClient:
    """``async with AsyncRerankerClient("127.0.0.1:50051") as c: await c.rerank(req)``."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
    ) -> None:
        self.timeout = timeout
        self.channel = (security or ClientSecurity()).aio_channel(
            target_for(addresses), _options(max_message_bytes)
        )
        self.stub = pb_grpc.RerankerStub(self.channel)

    async def rerank(
        self, request: pb.RerankRequest, timeout: float | None = None
    ) -> pb.RerankResponse:
        response: pb.RerankResponse = await self.stub.Rerank(
            request, timeout=timeout or self.timeout
        )
        return response

    async def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        info: pb.ModelInfo = await self.stub.GetModelInfo(
            pb.GetModelInfoRequest(), timeout=timeout or self.timeout
        )
        return info

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncRerankerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RerankerClient:
    """Blocking twin of ``AsyncRerankerClient``."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
    ) -> None:
        self.timeout = timeout
        self.channel = (security or ClientSecurity()).channel(
            target_for(addresses), _options(max_message_bytes)
        )
        self.stub = pb_grpc.RerankerStub(self.channel)

    def rerank(self, request: pb.RerankRequest, timeout: float | None = None) -> pb.RerankResponse:
        response: pb.RerankResponse = self.stub.Rerank(request, timeout=timeout or self.timeout)
        return response

    def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        info: pb.ModelInfo = self.stub.GetModelInfo(
            pb.GetModelInfoRequest(), timeout=timeout or self.timeout
        )
        return info

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RerankerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
