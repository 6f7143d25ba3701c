"""Long documents by their best passage: splitting by the model's tokenizer, and the real engine
finding the one passage that answers.

The engine test uses the branching scripted checkpoint of conftest (``SCRIPT_BRANCH``): a prompt
whose share of the trigger token " sofa" is high writes 200 filler tokens of reasoning before its
answer, any other prompt answers 10 at once. Served with ``max_new_tokens`` 64, a " sofa" passage
runs out of tokens (no answer, score 0) and only a passage without the trigger answers. So a
document of " sofa" passages with one " cat" passage in the middle is scored 0 by truncation (its
first passage is all " sofa") and 10 by its best passage, which must be the " cat" one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from conftest import engine_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from erank.backends.base import load_tokenizer
from erank.passages import best, spans, split
from erank.qwen3_tokenizer import qwen3_tokenizer_dir
from erank.ranking import Scored
from erank.score import ParsedAnswer
from erank.server import ScoringServer, running_server
from erank.validation import InvalidRequest
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

BEST = pb.LONG_DOCUMENTS_BEST_PASSAGE
LENGTH = 128  # tokens per passage in the engine tests
SOFA, CAT = " sofa", " cat"  # one token each in the tiny tokenizer


@pytest.fixture(scope="module", params=["tiny", "qwen3"])
def tokenizer(request: pytest.FixtureRequest, branch_checkpoint: Path) -> Any:
    """The tests' tiny tokenizer, and the real Qwen3 one (NFC-normalising, as ERank's)."""
    if request.param == "qwen3":
        return load_tokenizer(str(qwen3_tokenizer_dir()), None)
    return load_tokenizer(str(branch_checkpoint), None)


texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=400)


@settings(max_examples=60, deadline=None)
@given(texts, st.integers(1, 40), st.data())
def test_passages_tile_the_text_by_tokens(
    tokenizer: Any, text: str, length: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, length - 1))
    places = spans(tokenizer, text, length, overlap)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    n = len(offsets)
    if n <= length:
        assert places == [(0, len(text))]
        return
    stride = length - overlap
    assert len(places) == 1 + -(-(n - length) // stride)  # ceil
    for k, (start, end) in enumerate(places):
        first, last = k * stride, min(k * stride + length, n) - 1
        assert (start, end) == (offsets[first][0], offsets[last][1])  # exact token boundaries
    # offsets index the text as sent: together the passages cover all of it, with no gap
    assert places[0][0] == 0 and places[-1][1] == len(text)
    for (_, end), (start, _) in itertools.pairwise(places):
        assert start <= end


def test_caps_name_the_setting(tokenizer: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        split(tokenizer, ["short", SOFA * 50], 10, 0, per_document=4, per_request=100)
    (v,) = err.value.violations
    assert v.field == "documents[1]" and "splits into 5 passages" in v.description
    assert "max_passages_per_document" in v.description
    with pytest.raises(InvalidRequest) as err:
        split(tokenizer, [SOFA * 30, SOFA * 30], 10, 0, per_document=4, per_request=5)
    (v,) = err.value.violations
    assert v.field == "documents" and "split into 6 passages; the limit is 5" in v.description
    assert "max_passages_per_request" in v.description


def scored(answer: int | None) -> Scored:
    return Scored(ParsedAnswer(answer, 1.0, f"reasoning {answer}"), "")


def test_best_passage_takes_highest_score_then_an_answer_then_the_earliest() -> None:
    places = [(0, 5), (5, 9), (9, 12), (12, 20)]
    outcome = best([scored(None), scored(3), scored(3), scored(1)], places)
    assert outcome.passage == pb.Passage(index=1, start_char=5, end_char=9, count=4)
    assert (outcome.parsed.rank_score, outcome.parsed.reasoning) == (3.0, "reasoning 3")
    unanswered = best([scored(None), scored(0)], places[:2])
    assert unanswered.passage is not None and unanswered.passage.index == 1


# --- the real engine ---


@pytest_asyncio.fixture(scope="module")
async def short_client(
    branch_server: ScoringServer, branch_checkpoint: Path
) -> AsyncIterator[AsyncRerankerClient]:
    """A second gRPC server on the branch engine, generating at most 64 tokens per prompt."""
    settings_ = engine_settings(branch_checkpoint, max_new_tokens=64, max_passages_per_document=8)
    async with (
        running_server(settings_, backend=branch_server.backend) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=300) as client,
    ):
        yield client


def request(text: str, **fields: Any) -> pb.RerankRequest:
    return pb.RerankRequest(
        query="where does the cat sleep",
        documents=[pb.Document(id="long", text=text), pb.Document(id="short", text=CAT)],
        truncate_length=LENGTH,
        return_reasoning=True,
        **fields,
    )


@pytest.mark.engine
async def test_the_answering_passage_past_the_first_is_found(
    short_client: AsyncRerankerClient,
) -> None:
    # six passages of 128 tokens; the fourth (index 3) is the only one without the trigger
    text = SOFA * (3 * LENGTH) + CAT * LENGTH + SOFA * (2 * LENGTH)
    started = time.perf_counter()
    response = await short_client.rerank(request(text, long_documents=BEST, passage_overlap=0))
    elapsed = time.perf_counter() - started
    by_id = {r.id: r for r in response.results}
    long = by_id["long"]
    assert long.passage.count == 6 and long.passage.index == 3
    won = text[long.passage.start_char : long.passage.end_char]
    assert CAT in won and SOFA not in won
    assert (long.answer, long.status) == (10, pb.RESULT_STATUS_OK)
    assert long.reasoning == "<think>ok</think>"  # the winning passage's own reasoning
    assert not long.truncated
    # a document that fits one passage is that passage, and is scored like in truncation mode
    short = by_id["short"]
    assert short.passage == pb.Passage(index=0, start_char=0, end_char=len(CAT), count=1)
    assert response.usage.cache_misses == 7  # every passage is scored
    print(  # the cost of one six-passage document (run with -s to see it)
        f"\nbest passage, 6 passages + 1 short document: {response.usage.prompt_tokens} prompt "
        f"tokens, {response.usage.cached_prompt_tokens} from the prefix cache, "
        f"{response.usage.generated_tokens} generated, {elapsed:.2f} s"
    )
    truncated = await short_client.rerank(request(text))
    cut = {r.id: r for r in truncated.results}
    assert cut["long"].status == pb.RESULT_STATUS_NO_ANSWER and cut["long"].truncated
    assert not cut["long"].HasField("passage") and not cut["short"].HasField("passage")
    # Score-cache hits: the short document's prompt is the same in both modes, and so is the
    # long one's first passage, which is exactly the reference's truncation of the document.
    assert truncated.usage.cache_hits == 2
    assert cut["short"].rank_score == short.rank_score


@pytest.mark.engine
async def test_overlapping_passages_and_streaming(short_client: AsyncRerankerClient) -> None:
    text = SOFA * (2 * LENGTH) + CAT * LENGTH + SOFA * LENGTH
    events = [
        e
        async for e in short_client.stub.RerankStream(
            request(text, long_documents=BEST, passage_overlap=32)
        )
    ]
    results = [e.result for e in events if e.HasField("result")]
    assert sorted(r.id for r in results) == ["long", "short"]  # one event per document
    final = events[-1].response
    long = next(r for r in final.results if r.id == "long")
    won = text[long.passage.start_char : long.passage.end_char]
    assert long.answer == 10 and CAT in won
    assert long.passage.count == 5  # 512 tokens, stride 96: starts 0, 96, 192, 288, 384


@pytest.mark.engine
async def test_too_many_passages_is_invalid_argument(short_client: AsyncRerankerClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await short_client.rerank(request(SOFA * 2000, long_documents=BEST))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    # the default overlap is truncate_length / 8 = 16: stride 112, 1 + ceil((2000 - 128) / 112)
    assert "documents[0]: splits into 18 passages of 128 tokens (overlap 16)" in details
    assert "max_passages_per_document" in details
