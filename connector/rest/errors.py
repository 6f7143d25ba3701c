"""One error JSON for every route of the REST front, and the mapping of gRPC and body errors to it.

``{"error": {"type", "reason", "violations"?: [{"field", "description"}]}, "status"}``: the shape
OpenSearch and Elasticsearch answer errors in, so the engines' own error handling (our Java
processor, ml-commons, the ``custom`` inference service) shows the reason. No message quotes
more than a short prefix of a caller's value (:func:`erank.validation.preview`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import ValidationError

from erank_contract.vocabulary import scoring_error


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``application/json`` (no charset parameter, as before), compact, never NaN; floats stay
    floats (``0.0``): ml-commons casts ``relevance_score`` to ``Double`` and fails on ``0``."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return web.Response(
        body=text.encode(), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int,
    kind: str,
    reason: str,
    violations: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An OpenSearch-style error body."""
    error: dict[str, Any] = {"type": kind, "reason": reason}
    if violations:
        error["violations"] = [{"field": f, "description": d} for f, d in violations]
    return json_response({"error": error, "status": status}, status, headers)


def grpc_error(err: grpc.aio.AioRpcError, rest_field: Callable[[str], str]) -> web.Response:
    """A failed ``Rerank`` call: its ``BadRequest`` violations under the route's own field names
    (``rest_field`` maps a gRPC field path), ``RetryInfo`` as ``Retry-After`` whole seconds."""
    status, kind = scoring_error(err.code())
    violations: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        rich = rpc_status.from_call(err)  # type: ignore[arg-type]
        for detail in rich.details if rich is not None else ():
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(bad):
                violations += [(rest_field(v.field), v.description) for v in bad.field_violations]
            elif detail.Unpack(retry):
                delay = retry.retry_delay.ToTimedelta().total_seconds()
                headers["Retry-After"] = str(max(1, math.ceil(delay)))
    reason = "; ".join(f"{f}: {d}" for f, d in violations) or err.details() or err.code().name
    return error_response(status, kind, reason, violations, headers)


def json_path(loc: tuple[int | str, ...]) -> str:
    """``("documents", 1)`` -> ``documents[1]``, the way gRPC violations name fields too."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"


def validation_error(err: ValidationError) -> web.Response:
    """A body that is not JSON (``parse_exception``) or breaks the route's schema (one
    violation per field; pydantic's messages name the limit and never quote the value)."""
    errors = err.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(
            400, "parse_exception", f"request body is not JSON: {errors[0]['msg']}"
        )
    violations = [(json_path(e["loc"]), e["msg"]) for e in errors]
    reason = "; ".join(f"{f}: {d}" for f, d in violations)
    return error_response(400, "illegal_argument_exception", reason, violations)
