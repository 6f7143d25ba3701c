"""How one ``RerankResult`` reads in JSON, for every HTTP adapter (REST front, proxy, wrappers).

The status names, how each answer was reached (``completion``: ``full``, ``cut`` at the deadline
or ``unscored``, with its ``thinking_tokens``), the optional parts of a result (the model's
reasoning, the best passage) and the response's ``completions`` counts are written here once, so
the REST front's results and the proxy's ``fields._erank`` and ``ext.erank`` agree.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from erank_contract.v1 import reranker_pb2 as pb

_STATUS_NAMES = {
    pb.RESULT_STATUS_OK: "ok",
    pb.RESULT_STATUS_NO_ANSWER: "no_answer",
    pb.RESULT_STATUS_TRUNCATED_INPUT: "truncated_input",
    pb.RESULT_STATUS_UNSCORED: "unscored",
}
# COMPLETION_UNSPECIFIED: a server older than deadline cutting, whose every answer was full
_COMPLETION_NAMES = {
    pb.COMPLETION_UNSPECIFIED: "full",
    pb.COMPLETION_FULL: "full",
    pb.COMPLETION_CUT: "cut",
    pb.COMPLETION_UNSCORED: "unscored",
}
COMPLETIONS = ("full", "cut", "unscored")


def status_name(result: pb.RerankResult) -> str:
    """``ok``, ``no_answer``, ``truncated_input`` or ``unscored`` (``unspecified`` for anything
    else)."""
    return _STATUS_NAMES.get(result.status, "unspecified")


def completion_parts(result: pb.RerankResult) -> dict[str, Any]:
    """``completion`` (``full``, ``cut`` or ``unscored``) and ``thinking_tokens`` of a result."""
    return {
        "completion": _COMPLETION_NAMES.get(result.completion, "full"),
        "thinking_tokens": result.thinking_tokens,
    }


def completions_json(response: pb.RerankResponse) -> dict[str, Any]:
    """The response's ``completions``: how many documents got a ``full``, a ``cut`` or no
    (``unscored``) answer, how many of the full ones came from the score cache (``cached``:
    ``usage.cache_hits``), the deadline the server worked to (``deadline_ms``, 0: none) and how
    long before it the server began closing reasoning (``closing_margin_ms``). A server that
    sends no counts (older than deadline cutting) is counted from its results."""
    done = response.completions
    if response.HasField("completions"):
        counts = {"full": done.full, "cut": done.cut, "unscored": done.unscored}
    else:
        names = [completion_parts(r)["completion"] for r in response.results]
        counts = {name: names.count(name) for name in COMPLETIONS}
    return {
        **counts,
        "cached": response.usage.cache_hits,
        "deadline_ms": done.deadline_ms,
        "closing_margin_ms": float(done.closing_margin_ms),
    }


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
