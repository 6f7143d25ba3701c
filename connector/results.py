"""How one ``RerankResult`` reads in JSON, for every HTTP adapter (REST front, proxy, wrappers).

The status names and the optional parts of a result (the model's reasoning, the best passage)
are written here once, so the REST front's results and the proxy's ``fields._erank`` agree.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from erank_contract.v1 import reranker_pb2 as pb

_STATUS_NAMES = {
    pb.RESULT_STATUS_OK: "ok",
    pb.RESULT_STATUS_NO_ANSWER: "no_answer",
    pb.RESULT_STATUS_TRUNCATED_INPUT: "truncated_input",
}


def status_name(result: pb.RerankResult) -> str:
    """``ok``, ``no_answer`` or ``truncated_input`` (``unspecified`` for anything else)."""
    return _STATUS_NAMES.get(result.status, "unspecified")


def optional_parts(result: pb.RerankResult) -> dict[str, Any]:
    """``reasoning`` and ``passage`` where the result has them (only when they were asked for)."""
    parts: dict[str, Any] = {}
    if result.HasField("reasoning"):
        parts["reasoning"] = result.reasoning
    if result.HasField("passage"):
        parts["passage"] = MessageToDict(
            result.passage,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    return parts
