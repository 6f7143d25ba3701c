"""Hugging Face Text Embeddings Inference's rerank shape: ``POST /rerank``.

TEI's request is ``{"query", "texts", "raw_scores"?, "return_text"?, "truncate"?,
"truncation_direction"?}`` and its answer a bare list ``[{"index", "score", "text"?}]``, best
first; clients of a TEI reranker (Haystack's ``HuggingFaceTEIRanker``, LangChain, LlamaIndex)
take the first ``top_k`` of that list. TEI's scores are probabilities unless ``raw_scores``:
here ``score`` is ERank's ``rank_score`` / 10 (in [0, 1]), and ``rank_score`` itself (0–10)
with ``raw_scores``. ERank always cuts query and text to ``truncate_length`` tokens from the
end (the reference rule), so ``truncate`` changes nothing and ``truncation_direction`` may only
be ``right``. ``instruction`` / ``instruction_preset`` are ERank's extensions.
"""

from __future__ import annotations

from typing import Any, Literal

from connector.rest.cohere import ErankOptions
from erank_contract.v1 import reranker_pb2 as pb

MAX_RANK_SCORE = 10.0  # the largest answer, times a probability of at most 1


class TeiBody(ErankOptions):
    """``POST /rerank``."""

    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["right", "Right"] = "right"

    def to_proto(self) -> pb.RerankRequest:
        """The gRPC request; document ids are the positions, so results map back by index."""
        return pb.RerankRequest(
            query=self.query,
            instruction=self.instruction or "",
            instruction_preset=self.instruction_preset or "",
            documents=[pb.Document(id=str(i), text=text) for i, text in enumerate(self.texts)],
        )

    @staticmethod
    def rest_field(grpc_field: str) -> str:
        """``documents[3].text`` is ``texts[3]`` here."""
        if grpc_field.startswith("documents"):
            index = grpc_field[len("documents") :].partition(".")[0]
            return f"texts{index}"
        return grpc_field


def rerank_tei_json(response: pb.RerankResponse, body: TeiBody) -> list[dict[str, Any]]:
    """TEI's ``200`` body: the ranks, best first (the server's order)."""
    ranks = []
    for r in response.results:
        score = r.rank_score if body.raw_scores else r.rank_score / MAX_RANK_SCORE
        rank: dict[str, Any] = {"index": r.index, "score": float(score)}
        if body.return_text:
            rank["text"] = body.texts[r.index]
        ranks.append(rank)
    return ranks
