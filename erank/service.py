"""The ``erank.v1.Reranker`` gRPC service: a thin adapter from RPCs to the ``Scorer``.

Every failure a caller can act on ends with a status that says what to do, never ``UNKNOWN``:

- ``INVALID_ARGUMENT``: a bad request (each field and its limit, in the message and in a
  ``google.rpc.BadRequest`` detail; read it with ``grpc_status.rpc_status.from_call``), or bytes
  that are not a request at all (see erank/wire.py). Fix the request; do not retry.
- ``RESOURCE_EXHAUSTED``: the server is at an admission limit (erank/admission.py); the message
  names the limit and a ``google.rpc.RetryInfo`` detail says when to try again.
- ``UNAVAILABLE``: the model is still loading, the server is shutting down, or its engine died
  (erank/lifecycle.py). Another scoring server can take the call; the client retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from erank.admission import Admission, Overloaded, ShuttingDown
from erank.anytime import call_deadline
from erank.lifecycle import engine_failure
from erank.scorer import Scorer
from erank.validation import InvalidRequest, Violation
from erank.wire import Malformed, TooMany
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

M = TypeVar("M", bound=Message)


class RerankerService(pb_grpc.RerankerServicer):
    """Serves one ``Scorer``; ``scorer`` is None while the model is loading."""

    def __init__(self, admission: Admission) -> None:
        self.scorer: Scorer | None = None
        self.admission = admission

    def _ready(self) -> Scorer:
        if self.scorer is None:
            raise _Unavailable("the model is still loading")
        return self.scorer

    async def Rerank(
        self, request: pb.RerankRequest | Malformed | TooMany, context: grpc.aio.ServicerContext
    ) -> pb.RerankResponse:
        received = time.monotonic()
        async with self._status_on_error(context):
            decoded = _decoded(request)
            scorer = self._ready()
            deadline = call_deadline(received, decoded.budget_ms, context.time_remaining())
            with self.admission.admit(len(decoded.documents)):
                async with _fails_at(deadline, decoded):
                    return await scorer.rerank(decoded, deadline)
        raise AssertionError("unreachable: errors abort the call")

    async def RerankStream(
        self, request: pb.RerankRequest | Malformed | TooMany, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[pb.RerankEvent, None]:
        received = time.monotonic()
        async with self._status_on_error(context):
            decoded = _decoded(request)
            scorer = self._ready()
            deadline = call_deadline(received, decoded.budget_ms, context.time_remaining())
            with self.admission.admit(len(decoded.documents)):
                # aclosing: a cancelled call closes the scorer's stream, which stops engine work
                async with (
                    _fails_at(deadline, decoded),
                    contextlib.aclosing(scorer.stream(decoded, deadline)) as events,
                ):
                    async for event in events:
                        yield event

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        async with self._status_on_error(context):
            _decoded(request)
            return self._ready().model_info()
        raise AssertionError("unreachable: errors abort the call")

    @contextlib.asynccontextmanager
    async def _status_on_error(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Ends the call with the status each known failure calls for (see the module doc)."""
        try:
            yield
        except InvalidRequest as err:
            await context.abort_with_status(_bad_request(err))
        except Overloaded as err:
            if self.scorer is not None:
                self.scorer.background.shed()  # background work goes first under pressure
            await context.abort_with_status(_overloaded(err))
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's budget_ms passed")
        except (_Unavailable, ShuttingDown) as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except Exception:
            failure = engine_failure(self.scorer.backend) if self.scorer else None
            if failure is None:
                raise  # a bug: gRPC answers UNKNOWN and logs the traceback
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the scoring engine died ({failure}); this server is shutting down",
            )


class _Unavailable(Exception):
    pass


# With DEADLINE_POLICY_CUT the scorer answers by the deadline; this is only a backstop.
_CUT_BACKSTOP_S = 1.0


def _fails_at(deadline: float | None, request: pb.RerankRequest) -> asyncio.Timeout:
    """``TimeoutError`` (→ DEADLINE_EXCEEDED) when a ``budget_ms`` deadline passes: at once with
    DEADLINE_POLICY_FAIL, after a backstop with CUT. A gRPC deadline ends the call by itself."""
    if deadline is None or not request.budget_ms:
        return asyncio.timeout(None)
    late = 0.0 if request.deadline_policy == pb.DEADLINE_POLICY_FAIL else _CUT_BACKSTOP_S
    return asyncio.timeout(max(0.0, deadline + late - time.monotonic()))


def _decoded(request: M | Malformed | TooMany) -> M:
    if isinstance(request, Malformed):
        raise InvalidRequest([Violation("request", f"does not decode: {request.reason}")])
    if isinstance(request, TooMany):
        limit = request.limit
        raise InvalidRequest(
            [Violation("documents", f"holds more than {limit} documents; the limit is {limit}")]
        )
    return request


def _status(code: int, message: str, detail: Message) -> grpc.Status:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[packed]))


def _bad_request(err: InvalidRequest) -> grpc.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in err.violations
        ]
    )
    return _status(code_pb2.INVALID_ARGUMENT, str(err), detail)


def _overloaded(err: Overloaded) -> grpc.Status:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(err.retry_after_s * 1e9))
    detail = error_details_pb2.RetryInfo(retry_delay=delay)
    return _status(code_pb2.RESOURCE_EXHAUSTED, str(err), detail)
