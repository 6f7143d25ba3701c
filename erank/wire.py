"""Lenient decoding: the server's side of the wire beyond the proto.

gRPC decodes a request before the servicer sees it, and bytes that do not parse end the call
with ``UNKNOWN`` and an ERROR traceback in the log, once per request: a caller's mistake would
read like a server bug, and a noisy client could flood the log. ``add_reranker_service``
registers the generated handlers with a decoder that hands such bytes to the servicer as a
``Malformed`` value instead, which the service answers with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from erank_contract.v1 import reranker_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes did not decode; ``reason`` is protobuf's (no user data in it)."""

    reason: str


def _lenient_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a decoder that returns ``Malformed`` instead of raising."""
    decode = handler.request_deserializer
    assert decode is not None  # generated handlers always decode

    def lenient_decode(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as err:
            return Malformed(str(err))

    lenient: grpc.RpcMethodHandler = handler._replace(  # type: ignore[attr-defined]
        request_deserializer=lenient_decode  # grpc's handlers are namedtuples
    )
    return lenient


class _LenientRegistration:
    """Stands in for the server while the generated code registers its handlers, and
    registers them on the real server with lenient decoding (generated code stays the source
    of method names and message types)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: ``add_registered_method_handlers`` receives the same handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        lenient = {name: _lenient_handler(handler) for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, lenient),)
        )
        self._server.add_registered_method_handlers(service, lenient)


def add_reranker_service(servicer: pb_grpc.RerankerServicer, server: grpc.aio.Server) -> None:
    """``add_RerankerServicer_to_server``, with malformed requests reaching the servicer."""
    registration = cast(grpc.aio.Server, _LenientRegistration(server))  # duck-typed stand-in
    pb_grpc.add_RerankerServicer_to_server(servicer, registration)
