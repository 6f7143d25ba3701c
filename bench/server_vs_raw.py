"""Overhead of the scoring server over vLLM itself: one N-document request, same engine.

"server": a ``RerankRequest`` through a real gRPC channel (validation, prompt building,
truncation, answer parsing, fusion, protobuf on both sides).
"raw": the identical prompt token ids straight into the same ``AsyncLLM`` with the same sampling
parameters, all submitted at once. The two alternate, after a warm-up of each, and the median of
``--repeats`` runs is reported. Prints a table and writes JSON.

    python bench/server_vs_raw.py [--docs 100] [--repeats 5] [--max-new-tokens 64] [--model M]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from rich.console import Console
from rich.table import Table

from erank.backends.vllm import VllmBackend
from erank.checkpoints import build_random_checkpoint
from erank.server import running_server
from erank.settings import ServerSettings
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

WORDS = [
    "search",
    "ranking",
    "documents",
    "query",
    "relevance",
    "engine",
    "score",
    "answer",
    "model",
    "index",
]


def make_request(n: int) -> pb.RerankRequest:
    docs = [
        pb.Document(
            id=f"d{i}",
            text=" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(60 + i % 20)),
            first_stage_score=float(n - i),
        )
        for i in range(n)
    ]
    return pb.RerankRequest(query="how do rerankers order search results", documents=docs)


async def raw_run(backend: VllmBackend, prompts: list[list[int]], max_new_tokens: int) -> int:
    """Submit every prompt to AsyncLLM directly; return generated tokens."""
    from vllm.inputs import TokensPrompt

    params = backend._params(max_new_tokens)
    tag = time.monotonic_ns()

    async def one(i: int, prompt: list[int]) -> int:
        final = None
        async for out in backend.engine.generate(
            TokensPrompt(prompt_token_ids=prompt), params, f"raw-{tag}-{i}"
        ):
            final = out
        assert final is not None
        return len(final.outputs[0].token_ids)

    return sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


async def main(args: argparse.Namespace) -> dict[str, object]:
    model = args.model or str(build_random_checkpoint())
    settings = ServerSettings(
        model=model,
        port=0,
        dtype="float32",
        max_new_tokens=args.max_new_tokens,
        enforce_eager=args.enforce_eager,
        score_cache_entries=0,  # the same request repeats: measure scoring, not the cache
    )
    request = make_request(args.docs)
    async with (
        running_server(settings) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=3600) as client,
    ):
        backend = server.backend
        assert isinstance(backend, VllmBackend)
        scorer = server.service.scorer
        assert scorer is not None
        prompts = [
            p.token_ids
            for p in scorer.prompts.build(
                settings.default_instruction,
                request.query,
                [d.text for d in request.documents],
                settings.default_truncate_length,
            )
        ]
        server_s: list[float] = []
        raw_s: list[float] = []
        tokens = {"server": 0, "raw": 0}
        for rep in range(args.repeats + 1):  # run 0 warms both paths
            t = time.perf_counter()
            response = await client.rerank(request)
            dt_server = time.perf_counter() - t
            t = time.perf_counter()
            raw_tokens = await raw_run(backend, prompts, settings.max_new_tokens)
            dt_raw = time.perf_counter() - t
            if rep:
                server_s.append(dt_server)
                raw_s.append(dt_raw)
                tokens = {"server": response.usage.generated_tokens, "raw": raw_tokens}
    med_server, med_raw = statistics.median(server_s), statistics.median(raw_s)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "model": model,
        "docs": args.docs,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "generated_tokens": tokens,
        "server_s": server_s,
        "raw_s": raw_s,
        "server_docs_per_s": args.docs / med_server,
        "raw_docs_per_s": args.docs / med_raw,
        "ratio_server_over_raw": med_raw / med_server,
    }


def report(result: dict[str, object], out: Path) -> None:
    table = Table(title=f"{result['docs']} documents, {result['max_new_tokens']} new tokens max")
    for col in ("path", "median s", "docs/s", "generated tokens"):
        table.add_column(col, justify="right")
    tokens = result["generated_tokens"]
    assert isinstance(tokens, dict)
    for path in ("server", "raw"):
        runs = result[f"{path}_s"]
        assert isinstance(runs, list)
        table.add_row(
            path,
            f"{statistics.median(runs):.3f}",
            f"{result[f'{path}_docs_per_s']:.1f}",
            str(tokens[path]),
        )
    table.caption = f"server ÷ raw throughput: {result['ratio_server_over_raw']:.3f}"
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default=None, help="default: the tiny random checkpoint")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/server_vs_raw.json"))
    ns = parser.parse_args()
    report(asyncio.run(main(ns)), ns.out)
