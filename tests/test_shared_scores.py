"""Two `erank serve` processes sharing one real Valkey: what one scored, the other does not score.

Both servers run the real vLLM CPU engine on the tiny random checkpoint and are told the same
``score_cache_url`` (ERANK_SCORE_CACHE_URL, as the Helm chart sets it). The cache is an
optimisation, never a dependency: with Valkey killed or hung, calls still answer inside their
deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_operations_process import erank_serve, free_port, wait_serving
from valkey_server import ValkeyServer, valkey_server

from erank.shared_cache import RECONNECT_AFTER_S
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    with valkey_server() as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def addresses(random_checkpoint: Path, valkey: ValkeyServer) -> AsyncIterator[list[str]]:
    """Two servers on the one Valkey, started at the same time."""
    with contextlib.ExitStack() as stack:
        ports = [free_port(), free_port()]
        procs = [
            stack.enter_context(erank_serve(random_checkpoint, port, score_cache_url=valkey.url))
            for port in ports
        ]
        await asyncio.gather(*(wait_serving(p, port) for p, port in zip(procs, ports, strict=True)))
        yield [f"127.0.0.1:{port}" for port in ports]


def request(n: int = 4) -> pb.RerankRequest:
    tag = uuid.uuid4().hex
    docs = [pb.Document(id=f"d{i}", text=f"{tag} document {i}") for i in range(n)]
    return pb.RerankRequest(query=f"query {tag}", documents=docs)


async def rerank(address: str, call: pb.RerankRequest) -> tuple[pb.RerankResponse, float]:
    async with AsyncRerankerClient(address, timeout=DEADLINE_S) as client:
        began = time.monotonic()
        response = await client.rerank(call)
        return response, time.monotonic() - began


async def test_what_one_server_scored_the_other_answers_from_valkey(
    addresses: list[str],
) -> None:
    call = request()
    first, _ = await rerank(addresses[0], call)
    assert first.usage.cache_misses == 4 and first.usage.generated_tokens > 0
    await asyncio.sleep(0.5)  # writes are fire-and-forget: the answer does not wait for them
    second, _ = await rerank(addresses[1], call)
    assert second.usage.cache_hits == 4
    assert second.usage.generated_tokens == 0 and second.usage.prompt_tokens == 0
    assert all(r.cached for r in second.results)
    assert [(r.id, r.rank_score) for r in second.results] == [
        (r.id, r.rank_score) for r in first.results
    ]


async def test_valkey_killed_or_hung_costs_no_call(
    addresses: list[str], valkey: ValkeyServer
) -> None:
    valkey.kill()
    try:
        for address in addresses:
            response, took = await rerank(address, request())
            assert response.usage.cache_misses == 4 and took < DEADLINE_S
    finally:
        valkey.start()
    valkey.pause()
    try:
        response, took = await rerank(addresses[0], request())
        assert response.usage.cache_misses == 4 and took < DEADLINE_S
    finally:
        valkey.resume()
    # and in use again once it answers (each server reconnects on its own after a rest)
    await asyncio.sleep(RECONNECT_AFTER_S + 0.5)
    for _ in range(10):  # fresh documents each time: a local hit on B would prove nothing
        call = request()
        await rerank(addresses[0], call)
        await asyncio.sleep(0.5)
        response, _ = await rerank(addresses[1], call)
        if response.usage.cache_hits == 4:
            break
        await asyncio.sleep(RECONNECT_AFTER_S)
    assert response.usage.cache_hits == 4
