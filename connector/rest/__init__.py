"""The scoring server's HTTP/JSON front: ``POST /v1/rerank`` (Cohere's shape) and ``GET /health``.

Search engines that can call an HTTP model but not gRPC (ml-commons connectors, Elasticsearch's
``custom`` inference service, our OpenSearch ``erank`` processor) reach the scoring server here.
It is a translation layer only: JSON in, ``erank.v1.RerankRequest`` out through the one gRPC
client (:mod:`connector.client`), and back. Limits, defaults and fusion all stay in the server.

Request::

    {"query": str, "documents": [str], "top_n"?: int, "return_documents"?: bool,   # Cohere
     "instruction"?: str, "instruction_preset"?: str,                               # ERank
     "first_stage_scores"?: [float], "alpha"?: float,
     "fusion"?: "zscore" | "minmax" | "rrf", "rank_constant"?: int,
     "long_documents"?: "truncate" | "best_passage", "passage_overlap"?: int,
     "return_reasoning"?: bool}

``model`` and any other unknown key is ignored (ml-commons and Cohere clients send one).

Response ``200``: ``{"model", "fused", "fusion"?, "results": [...], "usage", "notice"?}``
(``fusion``: the method, when fused), one result per document (the best ``top_n`` with
``top_n``), best first; each result has ``index``, ``relevance_score`` (= ``hybrid_score`` when
fused, else ``rank_score``), ``rank_score``, ``answer``, ``answer_probability``, ``status``
(``ok``, ``no_answer``, ``truncated_input``), ``hybrid_score`` and ``first_stage_score`` when
there are any, ``document`` with ``return_documents``, ``reasoning`` (the model's text before its
answer) with ``return_reasoning``, ``passage`` (``index``, ``start_char``, ``end_char``,
``count``: the passage whose score the document took) with ``long_documents: best_passage``.
Scores are always JSON floats (``0.0``, never ``0``): ml-commons' Cohere post-process function
casts ``relevance_score`` to ``Double`` and fails on an integer.

Errors: ``{"error": {"type", "reason", "violations"?: [{"field", "description"}]}, "status"}``
with 400 (bad request; each violation names the field and the limit), 503 (scoring server
unavailable or loading), 504 (deadline exceeded), 429 (server overloaded, with ``Retry-After``
seconds), 502 (other failures). Integers are range-checked here, at the edge: a value the gRPC
request cannot hold is a 400 naming the field and the limit, never a 500 (which would also close
the client's keep-alive connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import uvicorn
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.client import DEFAULT_TIMEOUT_S, AsyncRerankerClient
from connector.results import optional_parts, status_name
from erank.fusion import FusionName
from erank.v1 import reranker_pb2 as pb
from erank.validation import (
    FUSION_USED,
    LongDocumentsName,
    preview,
    scoring_options,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reranker"].full_name
HEALTH_TIMEOUT_S = 5.0
UINT32_MAX = 2**32 - 1  # the largest value of a uint32 field of the gRPC request

# gRPC status of a failed Rerank call -> (HTTP status, error type)
_GRPC_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "illegal_argument_exception"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted"),
}
_OTHER_GRPC_ERROR = (502, "scoring_server_error")


class RerankBody(BaseModel):
    """``POST /v1/rerank``: Cohere's rerank request plus ERank's instruction and fusion."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    query: str
    documents: list[str]
    top_n: int | None = Field(None, ge=1, le=UINT32_MAX)
    return_documents: bool = False
    instruction: str | None = None
    instruction_preset: str | None = None  # checked by the server (unknown → 400)
    first_stage_scores: list[float] | None = None
    alpha: float | None = None
    fusion: FusionName | None = None
    rank_constant: int | None = Field(None, ge=1)  # only with rrf (checked by the server)
    long_documents: LongDocumentsName | None = None
    passage_overlap: int | None = Field(None, ge=0)  # only with best_passage (server)
    return_reasoning: bool = False

    @field_validator("first_stage_scores")
    @classmethod
    def _one_score_per_document(
        cls, scores: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        documents = info.data.get("documents")
        if scores is not None and documents is not None and len(scores) != len(documents):
            raise PydanticCustomError(
                "length_mismatch",
                "holds {scores} scores for {documents} documents; give one score per document",
                {"scores": len(scores), "documents": len(documents)},
            )
        return scores

    def to_proto(self) -> pb.RerankRequest:
        """The gRPC request; document ids are the positions, so results map back by index."""
        scores: Sequence[float | None] = self.first_stage_scores or [None] * len(self.documents)
        return pb.RerankRequest(
            query=self.query,
            instruction=self.instruction or "",
            instruction_preset=self.instruction_preset or "",
            documents=[
                pb.Document(id=str(i), text=text, first_stage_score=score)
                for i, (text, score) in enumerate(zip(self.documents, scores, strict=True))
            ],
            alpha=self.alpha,
            top_n=self.top_n or 0,
            return_reasoning=self.return_reasoning,
            **scoring_options(
                self.fusion, self.rank_constant, self.long_documents, self.passage_overlap
            ),
        )


def rerank_json(
    response: pb.RerankResponse, documents: Sequence[str] | None = None
) -> dict[str, Any]:
    """The ``200`` body for a gRPC response; ``documents`` adds Cohere's ``document.text``."""
    fused = response.ordered_by == pb.ORDERING_HYBRID_SCORE
    results = []
    for r in response.results:
        item: dict[str, Any] = {
            "index": r.index,
            "relevance_score": float(r.hybrid_score if fused else r.rank_score),
            "rank_score": float(r.rank_score),
            "answer": r.answer,
            "answer_probability": float(r.answer_probability),
            "status": status_name(r),
        }
        if r.HasField("hybrid_score"):
            item["hybrid_score"] = float(r.hybrid_score)
        if r.HasField("first_stage_score"):
            item["first_stage_score"] = float(r.first_stage_score)
        if r.status_detail:
            item["status_detail"] = r.status_detail
        if documents is not None:
            item["document"] = {"text": documents[r.index]}
        item |= optional_parts(r)
        results.append(item)
    body: dict[str, Any] = {
        "model": response.model,
        "fused": fused,
        **({"fusion": FUSION_USED[response.fusion]} if response.fusion in FUSION_USED else {}),
        "results": results,
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "generated_tokens": response.usage.generated_tokens,
            "cached_prompt_tokens": response.usage.cached_prompt_tokens,
            "cache_hits": response.usage.cache_hits,
            "cache_misses": response.usage.cache_misses,
        },
    }
    if response.notice:
        body["notice"] = response.notice
    return body


def error_response(
    status: int,
    kind: str,
    reason: str,
    violations: Sequence[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OpenSearch-style error body, so the engines' own error handling can show it."""
    error: dict[str, Any] = {"type": kind, "reason": reason}
    if violations:
        error["violations"] = [{"field": f, "description": d} for f, d in violations]
    return JSONResponse({"error": error, "status": status}, status_code=status, headers=headers)


def _rest_field(grpc_field: str) -> str:
    """The JSON field a gRPC ``BadRequest`` field path stands for (documents are plain strings
    here, and their first-stage scores a parallel list)."""
    if grpc_field.startswith("documents[") and "]." in grpc_field:
        index, _, member = grpc_field[len("documents[") :].partition("].")
        if member == "first_stage_score":
            return f"first_stage_scores[{index}]"
        return f"documents[{index}]"
    return grpc_field


def _grpc_error(err: grpc.aio.AioRpcError) -> JSONResponse:
    status, kind = _GRPC_ERRORS.get(err.code(), _OTHER_GRPC_ERROR)
    violations: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        rich = rpc_status.from_call(err)  # type: ignore[arg-type]
        for detail in rich.details if rich is not None else ():
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(bad):
                violations += [(_rest_field(v.field), v.description) for v in bad.field_violations]
            elif detail.Unpack(retry):
                delay = retry.retry_delay.ToTimedelta().total_seconds()
                headers["Retry-After"] = str(max(1, math.ceil(delay)))  # whole seconds in HTTP
    reason = "; ".join(f"{f}: {d}" for f, d in violations) or err.details() or err.code().name
    return error_response(status, kind, reason, violations, headers)


def _json_path(loc: tuple[int | str, ...]) -> str:
    """``("documents", 1)`` -> ``documents[1]``, the way gRPC violations name fields too."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"


def _validation_error(err: ValidationError) -> JSONResponse:
    errors = err.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(
            400, "parse_exception", f"request body is not JSON: {errors[0]['msg']}"
        )
    violations = [(_json_path(e["loc"]), e["msg"]) for e in errors]
    reason = "; ".join(f"{f}: {d}" for f, d in violations)
    return error_response(400, "illegal_argument_exception", reason, violations)


async def rerank(request: Request) -> JSONResponse:
    """``POST /v1/rerank``."""
    try:
        body = RerankBody.model_validate_json(await request.body())
    except ValidationError as err:
        return _validation_error(err)
    client: AsyncRerankerClient = request.app.state.client
    try:
        response = await client.rerank(body.to_proto())
    except grpc.aio.AioRpcError as err:
        return _grpc_error(err)
    return JSONResponse(rerank_json(response, body.documents if body.return_documents else None))


async def health(request: Request) -> JSONResponse:
    """``GET /health``: 200 only while the scoring server's gRPC health says SERVING, so a load
    balancer or an engine's validation call never reaches a loading or dead server."""
    client: AsyncRerankerClient = request.app.state.client
    check = client.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        answer: health_pb2.HealthCheckResponse = await check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=HEALTH_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as err:
        return error_response(
            503, "unavailable", f"scoring server: {err.code().name}: {err.details()}"
        )
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    return JSONResponse({"status": name}, status_code=200 if serving else 503)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = preview(request.url.path)
    return error_response(exc.status_code, "http_error", f"{request.method} {path}: {exc.detail}")


def create_app(reranker: str | Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> Starlette:
    """The ASGI app for the scoring server(s) at ``reranker`` (``host:port``, or several).

    The gRPC channel is opened in the app's lifespan, i.e. on the event loop that serves it.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncRerankerClient(reranker, timeout=timeout) as client:
            app.state.client = client
            yield

    return Starlette(
        routes=[
            Route("/v1/rerank", rerank, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )


@contextlib.asynccontextmanager
async def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn as a task of the running loop; yields its base URL.

    ``port=0`` picks a free port. The server stops (lifespan included) on exit.
    """
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise RuntimeError(f"the REST front did not start on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task


def run(
    reranker: str, host: str = "127.0.0.1", port: int = 8080, timeout: float = DEFAULT_TIMEOUT_S
) -> None:
    """Serve until SIGINT/SIGTERM (what ``erank rest`` does)."""
    uvicorn.run(create_app(reranker, timeout), host=host, port=port, log_level="info")
