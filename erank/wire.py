"""Lenient decoding: the server's side of the wire beyond the proto.

gRPC decodes a request before the servicer sees it, and bytes that do not parse end the call
with ``UNKNOWN`` and an ERROR traceback in the log, once per request: a caller's mistake would
read like a server bug, and a noisy client could flood the log. ``add_reranker_service``
registers the generated handlers with a decoder that hands such bytes to the servicer as a
``Malformed`` value instead, which the service answers with ``INVALID_ARGUMENT``.

Limits are enforced before allocation. gRPC refuses a message over its receive limit before
Python sees it (the server derives it from its limits: erank/server.py ``max_request_bytes``);
within it, a ``RerankRequest`` holding more than ``max_documents``
documents is refused from its bytes (``TooMany``), before protobuf builds an object per document
and validation a dict of their ids: 2,000,000 one-character documents are 27 MB on the wire
and were ~420 MB of resident memory, kept by the allocator after the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError

from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

_DOCUMENTS = pb.RerankRequest.DESCRIPTOR.fields_by_name["documents"].number


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes did not decode; ``reason`` is protobuf's (no user data in it)."""

    reason: str


@dataclass(frozen=True)
class TooMany:
    """A ``RerankRequest`` refused from its bytes: more than ``limit`` documents."""

    limit: int


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (IndexError past the end)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def count_documents(data: bytes, limit: int) -> int:
    """How many documents the ``RerankRequest`` in ``data`` holds, counted up to ``limit`` + 1
    from the top-level fields' tags and lengths alone (bytes that are no message count 0 here:
    protobuf's decoder says what is wrong with them)."""
    count = pos = 0
    try:
        while pos < len(data) and count <= limit:
            key, pos = _varint(data, pos)
            wire_type = key & 7
            if wire_type == 2:  # length-delimited: a string or a message
                length, pos = _varint(data, pos)
                if key >> 3 == _DOCUMENTS:
                    count += 1
                pos += length
            elif wire_type == 0:
                pos = _varint(data, pos)[1]
            elif wire_type in (1, 5):  # fixed 64 and 32 bits
                pos += 8 if wire_type == 1 else 4
            else:
                return 0
    except IndexError:
        return 0
    return count


def _lenient_handler(handler: grpc.RpcMethodHandler, max_documents: int) -> grpc.RpcMethodHandler:
    """``handler`` with a decoder that returns ``Malformed`` instead of raising, and ``TooMany``
    for a ``RerankRequest`` over ``max_documents`` documents instead of parsing it."""
    decode = handler.request_deserializer
    assert decode is not None  # generated handlers always decode
    reranking = decode == pb.RerankRequest.FromString

    def lenient_decode(data: bytes) -> Any:
        if reranking and count_documents(data, max_documents) > max_documents:
            return TooMany(max_documents)
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

    def __init__(self, server: grpc.aio.Server, max_documents: int) -> None:
        self._server = server
        self._max_documents = max_documents

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: ``add_registered_method_handlers`` receives the same handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        lenient = {
            name: _lenient_handler(handler, self._max_documents)
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, lenient),)
        )
        self._server.add_registered_method_handlers(service, lenient)


def add_reranker_service(
    servicer: pb_grpc.RerankerServicer, server: grpc.aio.Server, max_documents: int
) -> None:
    """``add_RerankerServicer_to_server``, with malformed requests and requests of more than
    ``max_documents`` documents reaching the servicer unparsed."""
    registration = cast(grpc.aio.Server, _LenientRegistration(server, max_documents))
    pb_grpc.add_RerankerServicer_to_server(servicer, registration)
