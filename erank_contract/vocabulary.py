"""The names both ends give the contract's options, and the limits both ends apply.

The server (``erank/``) reads requests with these names and the adapters (``connector/``,
``opensearch_plugin/``) write requests with them, so they live here, next to the stubs, and not
in the server package: an adapter importing ``erank.fusion`` for one ``Literal`` would pull numpy
and the server's settings into a connector-only install. Only grpcio/protobuf are needed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import grpc

from erank_contract.v1 import reranker_pb2 as pb

# One default for the server (``max_message_bytes``) and the clients, so both ends refuse the
# same sizes.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
UINT32_MAX = 2**32 - 1  # the largest value of a uint32 field of the gRPC request

FusionName = Literal["zscore", "minmax", "rrf"]
FUSION_METHODS: tuple[FusionName, ...] = ("zscore", "minmax", "rrf")
FUSION_NAMES: dict[pb.Fusion.ValueType, FusionName] = {
    pb.FUSION_UNSPECIFIED: "zscore",
    pb.FUSION_ZSCORE: "zscore",
    pb.FUSION_MINMAX: "minmax",
    pb.FUSION_RRF: "rrf",
}
FUSION_ENUMS: dict[FusionName, pb.Fusion.ValueType] = {
    "zscore": pb.FUSION_ZSCORE,
    "minmax": pb.FUSION_MINMAX,
    "rrf": pb.FUSION_RRF,
}
# RerankResponse.fusion -> its name; FUSION_UNSPECIFIED (nothing fused) is absent
FUSION_USED: dict[pb.Fusion.ValueType, FusionName] = {v: k for k, v in FUSION_ENUMS.items()}
LongDocumentsName = Literal["truncate", "best_passage"]
LONG_DOCUMENTS_ENUMS: dict[LongDocumentsName, pb.LongDocuments.ValueType] = {
    "truncate": pb.LONG_DOCUMENTS_TRUNCATE,
    "best_passage": pb.LONG_DOCUMENTS_BEST_PASSAGE,
}


def scoring_options(
    fusion: FusionName | None,
    rank_constant: int | None,
    long_documents: LongDocumentsName | None,
    passage_overlap: int | None,
) -> dict[str, Any]:
    """``RerankRequest`` fields for the adapters' names of these options (None: server default):
    one mapping for the REST front, the proxy and the wrappers."""
    return {
        "fusion": FUSION_ENUMS[fusion] if fusion else pb.FUSION_UNSPECIFIED,
        "rank_constant": rank_constant,
        "long_documents": LONG_DOCUMENTS_ENUMS[long_documents]
        if long_documents
        else pb.LONG_DOCUMENTS_UNSPECIFIED,
        "passage_overlap": passage_overlap,
    }


PREVIEW_CHARS = 64  # of a caller's value quoted in a message (gRPC metadata is 16 KiB at most)


def preview(value: str) -> str:
    """``value`` quoted, cut to its first ``PREVIEW_CHARS`` characters: every message that
    quotes a caller's value goes through here, so no message grows with the caller's input."""
    if len(value) <= PREVIEW_CHARS:
        return repr(value)
    return f"{value[:PREVIEW_CHARS]!r}… ({len(value)} characters)"


# A failed scoring call, by gRPC status: (HTTP status, error type). One name per failure for every
# adapter: the REST front's error JSON and the proxy's and wrappers' fail-open ``error.type``
# (the Java processor's RerankException uses the same ``connection_error`` and ``timeout``).
SCORING_ERRORS: Mapping[grpc.StatusCode, tuple[int, str]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: (400, "illegal_argument_exception"),
        grpc.StatusCode.UNAVAILABLE: (503, "connection_error"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
        grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "overloaded"),
    }
)
OTHER_SCORING_ERROR = (502, "scoring_server_error")


def scoring_error(code: grpc.StatusCode | None) -> tuple[int, str]:
    """(HTTP status, error type) of a scoring call that failed with ``code``."""
    return SCORING_ERRORS.get(code, OTHER_SCORING_ERROR) if code else OTHER_SCORING_ERROR


def fused(response: pb.RerankResponse) -> bool:
    """Whether the server ordered by the hybrid (fused) score, so that is each hit's score."""
    return response.ordered_by == pb.ORDERING_HYBRID_SCORE
