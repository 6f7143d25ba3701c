"""Latency the proxy adds to a search when it does not rerank: proxy (reranking turned off in its
config) vs the engine directly, same searches, same run, alternating.

Starts a real engine from Maven Central (tests/engines/), indexes the test corpus, and sends
``--searches`` BM25 ``match`` searches (with a 10-hit page) to each target over one kept-alive
HTTP connection pool, after ``--warmup`` of each. Reports the median, p90 and mean in ms, the
median difference and the ratio. Prints a table and writes JSON under bench/out/.

    python bench/proxy_latency.py [--engine opensearch|elasticsearch] [--version V]
                                  [--searches 300] [--warmup 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from engines import ELASTICSEARCH_VERSIONS, OPENSEARCH_VERSIONS, start_engine
from proxy_clients import index_corpus

from connector.proxy.app import running_proxy
from connector.rewrite.config import IndexConfig, ProxyConfig

QUERIES = ["quick fox", "lazy dog", "brown rabbit", "search engine", "river stone", "quick"]


async def one(session: aiohttp.ClientSession, url: str, query: str) -> float:
    """Milliseconds for one search, response read whole."""
    body = {"query": {"match": {"text": query}}, "size": 10}
    began = time.perf_counter()
    async with session.post(f"{url}/docs/_search", json=body) as response:
        await response.read()
        assert response.status == 200, response.status
    return (time.perf_counter() - began) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        "mean_ms": statistics.fmean(ordered),
    }


async def measure(engine_url: str, searches: int, warmup: int) -> dict[str, object]:
    off = ProxyConfig(default=IndexConfig(enabled=False))
    # reranking is off, so the scoring server is never called: no address needs to answer
    async with (
        running_proxy(engine_url, "127.0.0.1:9", off) as proxy,
        aiohttp.ClientSession() as session,
    ):
        targets = {"direct": engine_url, "proxy": proxy.url}
        samples: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(warmup + searches):
            for name, url in targets.items():
                took = await one(session, url, QUERIES[i % len(QUERIES)])
                if i >= warmup:
                    samples[name].append(took)
        stats = proxy.proxy.stats.as_json()
    direct, through = summary(samples["direct"]), summary(samples["proxy"])
    return {
        "searches_each": searches,
        "warmup_each": warmup,
        "direct": direct,
        "proxy_rerank_off": through,
        "added_median_ms": through["median_ms"] - direct["median_ms"],
        "ratio_median": through["median_ms"] / direct["median_ms"],
        "proxy_outcomes": stats["outcomes"],
    }


def report(result: dict[str, object], out: Path) -> None:
    table = Table(title=f"{result['engine']} {result['version']}: proxy (rerank off) vs direct")
    for column in ("target", "median ms", "p90 ms", "mean ms"):
        table.add_column(column)
    for name in ("direct", "proxy_rerank_off"):
        row = result[name]
        assert isinstance(row, dict)
        table.add_row(name, *(f"{row[k]:.3f}" for k in ("median_ms", "p90_ms", "mean_ms")))
    console = Console()
    console.print(table)
    console.print(
        f"added median {result['added_median_ms']:.3f} ms, ratio {result['ratio_median']:.3f}"
        f" ({result['searches_each']} searches each)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["opensearch", "elasticsearch"], default="opensearch")
    parser.add_argument("--version", default=None, help="engine version; newest pinned if unset")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/out/proxy_latency.json"))
    ns = parser.parse_args()
    if ns.searches < 200:
        parser.error("--searches must be at least 200")
    pinned = OPENSEARCH_VERSIONS if ns.engine == "opensearch" else ELASTICSEARCH_VERSIONS
    version = ns.version or pinned[-1]
    with start_engine(ns.engine, version) as engine:
        index_corpus(engine)
        result = asyncio.run(measure(engine.url, ns.searches, ns.warmup))
    result = {
        "engine": ns.engine,
        "version": version,
        **result,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    report(result, ns.out)


if __name__ == "__main__":
    main()
