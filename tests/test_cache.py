"""The score cache: a repeated document costs the engine nothing; what changes its score misses.

Engine work is read from the backend's counters (prompts submitted), never from timings.
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from conftest import engine_settings
from prometheus_client import REGISTRY

from erank.cache import CachedScore, ScoreCache, key_prefix, score_key
from erank.score import ParsedAnswer
from erank.server import ScoringServer, running_server
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


def entry(reasoning: str = "", with_reasoning: bool = False) -> CachedScore:
    return CachedScore(ParsedAnswer(7, 0.5, reasoning), with_reasoning)


def test_lru_by_entries() -> None:
    cache = ScoreCache(max_entries=2, max_bytes=1 << 20)
    cache.put(b"a", entry())
    cache.put(b"b", entry())
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", entry())
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None and cache.get(b"c") is not None
    assert len(cache) == 2


def test_bounded_by_bytes() -> None:
    cache = ScoreCache(max_entries=100, max_bytes=2000)
    for i in range(10):
        cache.put(bytes([i]), entry("x" * 500))
    assert cache.bytes <= 2000 and len(cache) == 2
    cache.put(b"huge", entry("x" * 5000))  # larger than the whole cache: not stored
    assert cache.get(b"huge") is None and len(cache) == 2


def test_ttl_expires_entries() -> None:
    now = [0.0]
    cache = ScoreCache(max_entries=10, max_bytes=1 << 20, ttl_s=60, clock=lambda: now[0])
    cache.put(b"a", entry())
    now[0] = 59.0
    assert cache.get(b"a") is not None
    now[0] = 60.0
    assert cache.get(b"a") is None and len(cache) == 0 and cache.bytes == 0


def test_entry_without_reasoning_misses_when_reasoning_is_asked() -> None:
    cache = ScoreCache(max_entries=10, max_bytes=1 << 20)
    cache.put(b"a", entry())
    assert cache.get(b"a", with_reasoning=True) is None
    cache.put(b"a", entry("<think>why</think>", with_reasoning=True))
    hit = cache.get(b"a", with_reasoning=True)
    assert hit is not None and hit.parsed.reasoning == "<think>why</think>"


def test_key_covers_every_part() -> None:
    base = score_key(key_prefix("m", None, "erank-v1", "full", None, 1024), [1, 2, 3])
    assert base == score_key(key_prefix("m", None, "erank-v1", "full", None, 1024), [1, 2, 3])
    others = [
        score_key(key_prefix("m2", None, "erank-v1", "full", None, 1024), [1, 2, 3]),
        score_key(key_prefix("m", "r1", "erank-v1", "full", None, 1024), [1, 2, 3]),
        score_key(key_prefix("m", None, "erank-v2", "full", None, 1024), [1, 2, 3]),
        score_key(key_prefix("m", None, "erank-v1", "thinking_budget", 64, 1024), [1, 2, 3]),
        score_key(key_prefix("m", None, "erank-v1", "full", None, 512), [1, 2, 3]),
        score_key(key_prefix("m", None, "erank-v1", "full", None, 1024), [1, 2, 4]),
    ]
    assert len({base, *others}) == 7


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


DOCS = [
    pb.Document(id="short", text="a short document about caching"),
    pb.Document(id="long", text="ranking " * 300),  # cut by any truncate_length below 300
]


async def test_repeated_request_does_no_engine_work(branch_server: ScoringServer) -> None:
    backend = branch_server.backend
    assert backend is not None
    request = pb.RerankRequest(query="cache me", documents=DOCS, return_reasoning=True)
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        first = await client.rerank(request)
        assert (first.usage.cache_hits, first.usage.cache_misses) == (0, 2)
        hits = metric("erank_score_cache_hits_total")
        engine = (backend.counters.requests, backend.counters.generated_tokens)
        second = await client.rerank(request)
        assert (backend.counters.requests, backend.counters.generated_tokens) == engine
        assert metric("erank_score_cache_hits_total") == hits + 2
        assert (second.usage.cache_hits, second.usage.cache_misses) == (2, 0)
        assert second.usage.generated_tokens == 0 and second.usage.prompt_tokens == 0
        assert all(r.cached for r in second.results)
        for a, b in zip(first.results, second.results, strict=True):
            assert (a.id, a.answer, a.answer_probability, a.reasoning, a.status) == (
                b.id,
                b.answer,
                b.answer_probability,
                b.reasoning,
                b.status,
            )
        # Pagination: a request holding one scored and one new document pays for one.
        page = pb.RerankRequest(
            query="cache me",
            documents=[DOCS[0], pb.Document(id="new", text="another document")],
        )
        before = backend.counters.requests
        response = await client.rerank(page)
        assert backend.counters.requests == before + 1
        assert {r.id: r.cached for r in response.results} == {"short": True, "new": False}


@pytest.mark.parametrize(
    ("change", "misses", "engine_prompts"),
    [
        ({"instruction": "Another relevance definition."}, {"short", "long"}, 2),
        ({"truncate_length": 100}, {"long"}, 1),  # the short one's prompt is unchanged: a hit
        # score-only: the digit step, and (the model's digit is 1) the step telling 10 from 1
        ({"mode": pb.SCORING_MODE_SCORE_ONLY}, {"short", "long"}, 4),
        ({"mode": pb.SCORING_MODE_THINKING_BUDGET, "thinking_budget": 2}, {"short", "long"}, 2),
        ({"query": "cache me!"}, {"short", "long"}, 2),
    ],
)
async def test_what_changes_the_prompt_or_mode_misses(
    branch_server: ScoringServer, change: dict[str, object], misses: set[str], engine_prompts: int
) -> None:
    backend = branch_server.backend
    assert backend is not None
    base = pb.RerankRequest(query="cache me", documents=DOCS, truncate_length=200)
    async with AsyncRerankerClient(f"127.0.0.1:{branch_server.port}", timeout=120) as client:
        await client.rerank(base)
        changed = pb.RerankRequest()
        changed.CopyFrom(base)
        for name, value in change.items():
            setattr(changed, name, value)
        before = backend.counters.requests
        response = await client.rerank(changed)
    assert {r.id for r in response.results if not r.cached} == misses
    assert response.usage.cache_misses == len(misses)
    assert backend.counters.requests - before == engine_prompts


async def test_cache_off_and_metrics_endpoint(branch_server: ScoringServer) -> None:
    settings = engine_settings(
        Path(branch_server.settings.model), score_cache_entries=0, metrics_port=0
    )
    request = pb.RerankRequest(query="no cache", documents=DOCS[:1])
    async with (
        running_server(settings, branch_server.backend) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=120) as client,
    ):
        backend = server.backend
        assert backend is not None and server.metrics is not None
        await client.rerank(request)
        before = backend.counters.requests
        again = await client.rerank(request)
        assert backend.counters.requests == before + 1
        assert (again.usage.cache_hits, again.usage.cache_misses) == (0, 1)
        url = f"http://127.0.0.1:{server.metrics.port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    body = text.decode()
    for name in (
        "erank_score_cache_hits_total",
        "erank_score_cache_misses_total",
        'erank_documents_scored_total{mode="full"}',
        'erank_engine_requests_total{backend="vllm"}',
    ):
        assert name in body
