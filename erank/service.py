"""The ``erank.v1.Reranker`` gRPC service: a thin adapter from RPCs to the ``Scorer``.

Bad requests end with ``INVALID_ARGUMENT``, a message naming each field and its limit, and a
``google.rpc.BadRequest`` detail (read it with ``grpc_status.rpc_status.from_call``). Until the
model has loaded and answered its warm-up request, calls end with ``UNAVAILABLE``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from erank.scorer import Scorer
from erank.v1 import reranker_pb2 as pb
from erank.v1 import reranker_pb2_grpc as pb_grpc
from erank.validation import InvalidRequest

log = logging.getLogger(__name__)


class RerankerService(pb_grpc.RerankerServicer):
    """Serves one ``Scorer``; ``scorer`` is None while the model is loading."""

    def __init__(self) -> None:
        self.scorer: Scorer | None = None

    def _ready(self) -> Scorer:
        if self.scorer is None:
            raise _Unavailable()
        return self.scorer

    async def Rerank(
        self, request: pb.RerankRequest, context: grpc.aio.ServicerContext
    ) -> pb.RerankResponse:
        try:
            return await self._ready().rerank(request)
        except InvalidRequest as err:
            await context.abort_with_status(_bad_request(err))
        except _Unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is still loading")
        raise AssertionError("unreachable: abort raises")

    async def RerankStream(
        self, request: pb.RerankRequest, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[pb.RerankEvent, None]:
        try:
            scorer = self._ready()
            # aclosing: a cancelled call closes the scorer's stream, which stops the engine work
            async with contextlib.aclosing(scorer.stream(request)) as events:
                async for event in events:
                    yield event
        except InvalidRequest as err:
            await context.abort_with_status(_bad_request(err))
        except _Unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is still loading")

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        try:
            return self._ready().model_info()
        except _Unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is still loading")
        raise AssertionError("unreachable: abort raises")


class _Unavailable(Exception):
    pass


def _bad_request(err: InvalidRequest) -> grpc.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in err.violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(err), details=[packed])
    return rpc_status.to_status(status)
