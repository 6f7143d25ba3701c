"""Counting a ``RerankRequest``'s documents from its bytes (erank/wire.py) as protobuf would."""

from __future__ import annotations

from erank.wire import count_documents
from erank_contract.v1 import reranker_pb2 as pb


def _request(documents: int) -> bytes:
    docs = [
        pb.Document(id=f"d{i}", text="é" * (i % 300), first_stage_score=i / 3)
        for i in range(documents)
    ]
    return pb.RerankRequest(
        query="q" * 200, instruction="i", documents=docs, top_n=3, alpha=0.5, budget_ms=10**6
    ).SerializeToString()


def test_counts_documents_up_to_one_over_the_limit() -> None:
    for documents in (0, 1, 7, 200):
        data = _request(documents)
        assert count_documents(data, 1000) == documents
        assert count_documents(data, 5) == min(documents, 6)


def test_bytes_that_are_no_message_count_nothing() -> None:
    data = _request(3)
    assert count_documents(data[:-1] + b"\xff", 1000) in (0, 3)  # protobuf says what is wrong
    assert count_documents(b"\xff" * 20, 1000) == 0
    assert count_documents(b"\x0f", 1000) == 0  # wire type 7 does not exist
