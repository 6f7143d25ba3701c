"""``erank bench proxy``: what the query proxy costs a search, live and in isolation.

Live: the same BM25 searches sent alternately to the engine directly and through the proxy over
one kept-alive connection pool each, with reranking off in the proxy's config (what the proxy's
own HTTP hop costs) and, when a scoring server is given, on (what reranking costs end to end);
medians and ratio. Isolated: the proxy's rewrite of one search (plan, scoring request, reranked
response) and the fusion of first-stage with rank scores, on synthetic hits in this process;
hits per second of CPU time on one core (aim ≥ 50,000).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

WORDS = ["quick", "fox", "lazy", "dog", "rabbit", "grass", "search", "rank", "engine", "river"]
QUERIES = ["quick fox", "lazy dog", "search engine", "river stone", "quick rabbit", "rank"]


@dataclass(frozen=True)
class ProxyBench:
    """What to measure; see ``erank bench proxy --help``."""

    engine_url: str
    reranker: str | None = None  # scoring server HOST:PORT; None: reranking-on is skipped
    index: str = "erank-bench"
    documents: int = 500
    searches: int = 200
    warmup: int = 20
    window: int = 10
    isolated_hits: int = 100  # hits per synthetic response
    isolated_seconds: float = 2.0


def _text(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 12))


async def index_documents(session: Any, bench: ProxyBench) -> None:
    """(Re)create ``bench.index`` with ``bench.documents`` generated texts, refreshed."""
    import json

    url = f"{bench.engine_url}/{bench.index}"
    async with session.delete(url) as r:
        await r.read()
    body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    async with session.put(url, json=body) as r:
        assert r.status == 200, await r.text()
    lines = []
    for i in range(bench.documents):
        lines += [json.dumps({"index": {"_id": f"b{i}"}}), json.dumps({"text": _text(i)})]
    async with session.post(
        f"{url}/_bulk?refresh=true",
        data="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"},
    ) as r:
        assert r.status == 200, await r.text()


async def _search(session: Any, url: str, index: str, query: str) -> tuple[float, str]:
    """Milliseconds for one 10-hit match search (response read whole) and the proxy's status
    (``ext.erank.status``: "reranked", "failed_open", …; "" from the engine itself)."""
    import json

    body = {"query": {"match": {"text": query}}, "size": 10}
    began = time.perf_counter()
    async with session.post(f"{url}/{index}/_search", json=body) as response:
        raw = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    ms = (time.perf_counter() - began) * 1000
    return ms, str(json.loads(raw).get("ext", {}).get("erank", {}).get("status", ""))


async def compare(direct: str, proxied: str, bench: ProxyBench) -> dict[str, Any]:
    """Alternate direct and proxied searches; medians, p90s and the ratio."""
    import aiohttp

    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        sessions = {"direct": (a, direct), "proxy": (b, proxied)}
        for n in range(bench.warmup + bench.searches):
            query = QUERIES[n % len(QUERIES)]
            order = ["direct", "proxy"] if n % 2 == 0 else ["proxy", "direct"]
            for name in order:
                session, url = sessions[name]
                ms, status = await _search(session, url, bench.index, query)
                if n >= bench.warmup:
                    samples[name].append(ms)
                    if name == "proxy":
                        key = status or "passed through"
                        statuses[key] = statuses.get(key, 0) + 1
    out: dict[str, Any] = {}
    for name, values in samples.items():
        ordered = sorted(values)
        out[name] = {
            "median_ms": statistics.median(ordered),
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        }
    out["searches"] = bench.searches
    out["proxy_statuses"] = statuses  # every search must be "reranked" with reranking on
    out["ratio_median"] = out["proxy"]["median_ms"] / out["direct"]["median_ms"]
    return out


async def live(bench: ProxyBench) -> dict[str, Any]:
    """Reranking off, then (with a scoring server) on, each against direct searches."""
    import aiohttp

    from connector.proxy.app import running_proxy
    from connector.rewrite.config import IndexConfig, ProxyConfig

    async with aiohttp.ClientSession() as session:
        await index_documents(session, bench)
    result: dict[str, Any] = {}
    modes = {"off": IndexConfig(enabled=False)}
    if bench.reranker is not None:
        modes["on"] = IndexConfig(window=bench.window, budget_ms=300_000)  # never fail open
    for name, config in modes.items():
        reranker = bench.reranker or "127.0.0.1:1"  # never called with reranking off
        async with running_proxy(bench.engine_url, reranker, ProxyConfig(default=config)) as p:
            result[f"rerank_{name}"] = await compare(bench.engine_url, p.url, bench)
    return result


def isolated(bench: ProxyBench) -> dict[str, Any]:
    """Hits per CPU-second of the proxy's rewrite and of the fusion, on synthetic hits."""
    from connector.rewrite.config import IndexConfig, ProxyConfig
    from connector.rewrite.hits import Timings, rerank_request, reranked_body
    from connector.rewrite.search import SearchPlan, plan_search
    from erank.fusion import hybrid_scores
    from erank_contract.v1 import reranker_pb2 as pb

    n = bench.isolated_hits
    config = ProxyConfig(default=IndexConfig(window=n))
    body = {"query": {"match": {"text": "quick fox"}}, "size": 10}
    hits = [
        {"_index": "docs", "_id": f"b{i}", "_score": 10.0 - i / n, "_source": {"text": _text(i)}}
        for i in range(n)
    ]
    response = {"took": 3, "hits": {"total": {"value": n}, "max_score": 10.0, "hits": hits}}
    first = [float(h["_score"]) for h in hits]  # type: ignore[arg-type]
    rank_scores = [float((i * 37) % 11) * 0.9 for i in range(n)]
    fused = hybrid_scores(first, rank_scores, 0.2, "zscore", 60)
    answer = pb.RerankResponse(
        results=[
            pb.RerankResult(id=str(i), index=i, rank_score=rank_scores[i], hybrid_score=fused[i])
            for i in sorted(range(n), key=lambda i: -fused[i])
        ],
        ordered_by=pb.ORDERING_HYBRID_SCORE,
        fusion=pb.FUSION_ZSCORE,
    )

    def rewrite() -> None:
        plan = plan_search("docs", {}, body, config)
        assert isinstance(plan, SearchPlan)
        _request, missing = rerank_request(plan, response)
        reranked_body(plan, response, answer, missing, Timings(3.0, 5.0))

    def fuse() -> None:
        scores = hybrid_scores(first, rank_scores, 0.2, "zscore", 60)
        sorted(range(n), key=lambda i: (-scores[i], i))

    return {
        "hits_per_call": n,
        "rewrite_hits_per_cpu_s": _rate(rewrite, n, bench.isolated_seconds),
        "fusion_hits_per_cpu_s": _rate(fuse, n, bench.isolated_seconds),
    }


def _rate(fn: Any, hits: int, seconds: float) -> float:
    """Hits per second of process CPU time over repeated calls for about ``seconds``."""
    fn()  # warm
    calls = 0
    began = time.process_time()
    while time.process_time() - began < seconds:
        fn()
        calls += 1
    return calls * hits / (time.process_time() - began)


async def run(bench: ProxyBench) -> dict[str, Any]:
    """Live comparisons and the isolated rates; the results as JSON."""
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    live_result = await live(bench)
    return {
        "date": began,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
        "bench": asdict(bench),
        "live": live_result,
        "isolated": await asyncio.to_thread(isolated, bench),
    }
