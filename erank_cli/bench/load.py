"""One load level: ``requests`` rerank requests of ``docs`` documents, ``concurrency`` at a time.

The same level is driven two ways, on the same engine, each on its own new requests of the same
token lengths (``Corpus``): ``server_pass`` sends each request over gRPC (``RerankStream``: the
time to the first streamed result is measured too) and ``raw_pass`` submits its prompts straight
to vLLM's ``AsyncLLM`` with the sampling parameters the server uses. What differs is exactly what
the server adds: validation, prompt building, answer parsing, fusion, protobuf and gRPC. Each
pass records the prompt tokens it sent and how many of them vLLM's prefix cache held, so a
pass that found another's prompts cached would show.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

WORDS = ["search", "ranking", "documents", "query", "relevance"]
WORDS += ["engine", "score", "answer", "model", "index", "stone", "river"]


@dataclass(frozen=True)
class Pass:
    """One pass over a level's requests: wall seconds, this process's CPU seconds, the calls.

    The CPU time is every thread of this process (gRPC server and client, the scorer, vLLM's
    output handling) but not the engine core's: what the front end spent, which a busy shared
    machine slows but does not inflate the way it inflates wall time.
    """

    wall_s: float
    cpu_s: float
    calls: list[Call]


@dataclass(frozen=True)
class Call:
    """One finished request: seconds to the first result and to the whole answer."""

    first_s: float
    total_s: float
    docs: int
    generated_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int  # of those, found in vLLM's prefix cache


class Corpus:
    """Fresh requests on demand: every query and every document new, and the same length.

    A 15-digit mark (this corpus's random number, then a running count) leads each document and
    ends each query. Digits are one token each in Qwen's pre-tokenizer, so every document is
    ``doc_tokens`` + 16 tokens and every query the same length, whatever the count: two passes
    given their own requests do identical work, and neither finds the other's prompts in vLLM's
    prefix cache (only the template head before the query is shared, by every pass alike) nor
    its scores in a score cache. ``check_same_shape`` verifies the lengths with the tokenizer.
    """

    def __init__(self, tokenizer: Any, doc_tokens: int) -> None:
        self.tokenizer = tokenizer
        filler = " ".join(WORDS[(j * 7) % len(WORDS)] for j in range(doc_tokens + 8))
        cut = tokenizer(filler, add_special_tokens=False)["input_ids"][:doc_tokens]
        self.body = tokenizer.decode(cut)
        self.run = random.randrange(10**6)  # no text repeats across runs either
        self.count = 0

    def mark(self) -> str:
        self.count += 1
        return f"{self.run:06d}{self.count:09d}"

    def requests(self, count: int, docs: int) -> list[pb.RerankRequest]:
        """``count`` new requests of ``docs`` new documents; first-stage scores set, so fusion
        runs as in a hybrid search."""
        return [
            pb.RerankRequest(
                query=f"how do rerankers order search results {self.mark()}",
                documents=[
                    pb.Document(
                        id=f"d{i}", text=f"{self.mark()} {self.body}", first_stage_score=docs - i
                    )
                    for i in range(docs)
                ],
            )
            for _ in range(count)
        ]

    def shape(self, requests: Sequence[pb.RerankRequest]) -> list[tuple[int, ...]]:
        """Per request: the query's token count, then each document's."""
        encode = self.tokenizer
        texts = [[r.query, *(d.text for d in r.documents)] for r in requests]
        return [
            tuple(len(ids) for ids in encode(t, add_special_tokens=False)["input_ids"])
            for t in texts
        ]

    def check_same_shape(self, sets: Sequence[Sequence[pb.RerankRequest]]) -> None:
        """Refuse request sets whose queries or documents differ in token counts."""
        shapes = [self.shape(s) for s in sets]
        if any(s != shapes[0] for s in shapes[1:]):
            raise RuntimeError("the passes' requests differ in token counts: not a fair pair")


async def _drive(
    items: Sequence[Any], concurrency: int, one: Callable[[Any], Awaitable[Call]]
) -> Pass:
    """Run ``one`` over ``items``, ``concurrency`` at a time."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    calls: list[Call] = []

    async def worker() -> None:
        while not queue.empty():
            calls.append(await one(queue.get_nowait()))

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Pass(time.perf_counter() - began, time.process_time() - cpu, calls)


async def server_pass(
    channel: grpc.aio.Channel, requests: Sequence[pb.RerankRequest], concurrency: int
) -> Pass:
    """Every request through ``RerankStream`` on ``channel``."""
    stub = pb_grpc.RerankerStub(channel)

    async def one(request: pb.RerankRequest) -> Call:
        began = time.perf_counter()
        first = 0.0
        response = None
        async for event in stub.RerankStream(request):
            if event.HasField("response"):
                response = event.response
            elif not first:
                first = time.perf_counter() - began
        assert response is not None, "the stream ended without a response"
        total = time.perf_counter() - began
        usage = response.usage
        return Call(
            first,
            total,
            len(request.documents),
            usage.generated_tokens,
            usage.prompt_tokens,
            usage.cached_prompt_tokens,
        )

    return await _drive(requests, concurrency, one)


async def raw_pass(
    engine: Any, params: Any, prompts: Sequence[list[list[int]]], concurrency: int
) -> Pass:
    """Every request's prompts straight into ``AsyncLLM.generate``, all at once per request."""
    from vllm.inputs import TokensPrompt

    async def one(request: list[list[int]]) -> Call:
        began = time.perf_counter()
        call = uuid.uuid4().hex
        firsts: list[float] = []

        async def gen(i: int, prompt: list[int]) -> tuple[int, int]:
            final = None
            async for out in engine.generate(
                TokensPrompt(prompt_token_ids=prompt), params, f"raw-{call}-{i}"
            ):
                final = out
            assert final is not None
            firsts.append(time.perf_counter() - began)
            return len(final.outputs[0].token_ids), int(final.num_cached_tokens or 0)

        done = await asyncio.gather(*(gen(i, p) for i, p in enumerate(request)))
        return Call(
            min(firsts),
            time.perf_counter() - began,
            len(request),
            sum(tokens for tokens, _ in done),
            sum(len(p) for p in request),
            sum(cached for _, cached in done),
        )

    return await _drive(prompts, concurrency, one)


def summary(p: Pass) -> dict[str, float]:
    """docs/s, generated tokens/s, latency percentiles (ms), front-end CPU ms per document."""
    wall_s, calls = p.wall_s, p.calls
    totals = sorted(c.total_s for c in calls)
    firsts = sorted(c.first_s for c in calls)
    return {
        "requests": len(calls),
        "wall_s": wall_s,
        "docs_per_s": sum(c.docs for c in calls) / wall_s,
        "generated_tokens_per_s": sum(c.generated_tokens for c in calls) / wall_s,
        "generated_tokens": sum(c.generated_tokens for c in calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "cached_prompt_tokens": sum(c.cached_prompt_tokens for c in calls),
        "p50_ms": 1000 * percentile(totals, 50),
        "p95_ms": 1000 * percentile(totals, 95),
        "p99_ms": 1000 * percentile(totals, 99),
        "first_result_p50_ms": 1000 * percentile(firsts, 50),
        "cpu_ms_per_doc": 1000 * p.cpu_s / sum(c.docs for c in calls),
    }


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]
