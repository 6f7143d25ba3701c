"""Fuzzing the scoring server's gRPC surface: generated requests through the real client, and
bytes that are not requests (or are mangled ones) straight on the wire (erank/wire.py).

Whatever arrives, the answer is OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED (the documented
codes; never UNKNOWN or INTERNAL, which a bug in the servicer gives), within the call's deadline,
and nothing is logged at ERROR or with a traceback. Valid requests are scored by the real engine
(the tiny random model; ``score_only`` unless the request asks for a reasoning mode, then with
pooled texts that the score cache answers after the first time): see tests/fuzzing.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from fuzzing import (
    CALL_TIMEOUT_S,
    CASES,
    FUZZ,
    any_floats,
    assert_no_traceback,
    fast_server_fixture,  # noqa: F401  a fixture
    pool_texts,
    texts,
    uint32s,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from erank.server import ScoringServer
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SLOW_MODES = (pb.SCORING_MODE_FULL, pb.SCORING_MODE_THINKING_BUDGET)
UNKNOWN_ENUM = 7  # proto3 enums are open: a newer client may send a value this server lacks
MANY = [pb.Document(id=str(i), text="x") for i in range(1001)]  # over max_documents (1000)
VALID = pb.RerankRequest(
    query="fox",
    instruction="judge",
    documents=[pb.Document(id="a", text="ok", first_stage_score=1.5), pb.Document(id="b")],
    truncate_length=16,
    alpha=0.3,
    top_n=1,
    mode=pb.SCORING_MODE_SCORE_ONLY,
    fusion=pb.FUSION_RRF,
    rank_constant=10,
).SerializeToString()


def documents(text: st.SearchStrategy[str]) -> st.SearchStrategy[pb.Document]:
    ids = st.one_of(st.sampled_from(["a", "b", "c", ""]), st.text(max_size=8))
    return st.builds(
        pb.Document, id=ids, text=text, first_stage_score=st.one_of(st.none(), any_floats)
    )


def enums(*values: int) -> st.SearchStrategy[int]:
    return st.sampled_from([*values, UNKNOWN_ENUM])


@st.composite
def requests(draw: st.DrawFn) -> pb.RerankRequest:
    """Any request; one in a reasoning mode keeps to pooled texts and plain options, so the
    engine generates for each pooled document once and the cache answers afterwards."""
    mode = draw(enums(*pb.ScoringMode.values()))
    if mode in SLOW_MODES:
        return pb.RerankRequest(
            query="fox",
            documents=draw(st.lists(documents(pool_texts), max_size=3)),
            mode=mode,
            thinking_budget=draw(st.sampled_from([None, 8])),
            top_n=draw(st.integers(0, 4)),
        )
    optional = st.one_of(st.none(), uint32s)
    return pb.RerankRequest(
        query=draw(texts),
        instruction=draw(st.one_of(st.just(""), texts)),
        instruction_preset=draw(st.sampled_from(["", "beir", "no-such-preset"])),
        documents=draw(st.one_of(st.lists(documents(texts), max_size=4), st.just(MANY))),
        truncate_length=draw(uint32s),
        alpha=draw(st.one_of(st.none(), any_floats)),
        top_n=draw(uint32s),
        return_reasoning=draw(st.booleans()),
        mode=mode,
        thinking_budget=draw(optional),
        fusion=draw(enums(*pb.Fusion.values())),
        rank_constant=draw(optional),
        long_documents=draw(enums(*pb.LongDocuments.values())),
        passage_overlap=draw(optional),
    )


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid request's bytes cut, with a byte changed, or with bytes put in."""
    data = bytearray(VALID)
    at = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["cut", "change", "insert"]))
    if how == "cut":
        return bytes(data[:at])
    if how == "change":
        data[at] = draw(st.integers(0, 255))
        return bytes(data)
    return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=8)) + bytes(data[at:])


@pytest_asyncio.fixture(scope="module")
async def client(fast_server: ScoringServer) -> AsyncIterator[AsyncRerankerClient]:
    async with AsyncRerankerClient(f"127.0.0.1:{fast_server.port}") as c:
        yield c
    print(f"\ngRPC cases sent: {dict(CASES)}")


async def _call(
    client: AsyncRerankerClient, request: pb.RerankRequest, stream: bool
) -> tuple[grpc.StatusCode, pb.RerankResponse | None, str]:
    try:
        if not stream:
            return grpc.StatusCode.OK, await client.rerank(request, CALL_TIMEOUT_S), ""
        events = [e async for e in client.stream(request, CALL_TIMEOUT_S)]
        return grpc.StatusCode.OK, events[-1].response, ""
    except grpc.aio.AioRpcError as err:
        return err.code(), None, err.details() or ""


@settings(FUZZ, max_examples=2000)
@given(requests(), st.booleans())
async def test_generated_requests_get_documented_codes(
    client: AsyncRerankerClient,
    caplog: pytest.LogCaptureFixture,
    request_: pb.RerankRequest,
    stream: bool,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # each example is judged by its own records
    code, response, details = await _call(client, request_, stream)
    CASES["grpc requests"] += 1
    CASES[f"grpc requests {code.name}"] += 1
    assert code in DOCUMENTED, (code, details)
    if response is not None:
        expected = len(request_.documents)
        if request_.top_n:
            expected = min(expected, request_.top_n)
        assert len(response.results) == expected
    else:
        assert 0 < len(details) < 2000  # names the field and the limit; quotes no whole value
    assert_no_traceback(caplog)


METHODS = ["Rerank", "RerankStream", "GetModelInfo"]


@settings(FUZZ, max_examples=4000)
@given(st.sampled_from(METHODS), st.one_of(st.binary(max_size=40), mangled()))
async def test_bytes_on_the_wire_get_documented_codes(
    client: AsyncRerankerClient, caplog: pytest.LogCaptureFixture, method: str, data: bytes
) -> None:
    """Bytes gRPC hands to the servicer undecoded: a request, or INVALID_ARGUMENT."""
    caplog.set_level(logging.WARNING)
    caplog.clear()  # each example is judged by its own records
    path = f"/erank.v1.Reranker/{method}"
    try:
        if method == "RerankStream":
            [_ async for _ in client.channel.unary_stream(path)(data, timeout=CALL_TIMEOUT_S)]
        else:
            await client.channel.unary_unary(path)(data, timeout=CALL_TIMEOUT_S)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        code = err.code()
    CASES["grpc bytes"] += 1
    assert code in DOCUMENTED, code
    assert_no_traceback(caplog)
