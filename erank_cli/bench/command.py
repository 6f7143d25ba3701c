"""The ``erank bench`` commands (registered in ``erank/cli.py``).

Only typer at import time: ``erank --help`` must not load vLLM, matplotlib or the proxy.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

bench_app = typer.Typer(
    help="Benchmarks: the scoring server against raw vLLM, deadline budgets, the proxy."
)


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{name}: comma-separated integers, got {text[:40]!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{name}: one or more integers ≥ 1, got {text[:40]!r}")
    return values


@bench_app.command("server")
def server_command(
    docs: Annotated[str, typer.Option(help="documents per request, comma-separated")] = "10,100",
    doc_tokens: Annotated[int, typer.Option(help="tokens per document")] = 80,
    concurrency: Annotated[
        str, typer.Option(help="concurrent requests, comma-separated")
    ] = "1,2,4,8,16,32,64",
    output_tokens: Annotated[
        int, typer.Option(help="generated tokens per document (the scripted model's length)")
    ] = 64,
    min_docs: Annotated[int, typer.Option(help="documents per level and pass, at least")] = 200,
    rounds: Annotated[
        int, typer.Option(help="rounds per level: each pass once, the first pass alternating")
    ] = 2,
    paths: Annotated[
        str | None, typer.Option(help="passes, first ÷ second (server,raw); raw,raw: self-test")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="model path or id [a tiny scripted checkpoint]")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="HOST:PORT of a running server (no raw comparison)")
    ] = None,
    enforce_eager: Annotated[bool, typer.Option(help="skip graph compilation")] = False,
    dtype: Annotated[str, typer.Option(help="engine dtype")] = "float32",
    out: Annotated[Path, typer.Option(help="folder for server.json and server.png")] = Path(
        "bench/out"
    ),
) -> None:
    """Load over gRPC (RerankStream) at each size and concurrency; raw AsyncLLM on prompts of the
    same token lengths in the same run, each pass on its own new documents; every round,
    docs/s, tokens/s, p50/p95/p99, first result, server ÷ raw (median of the rounds' ratios)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from erank_cli.bench.report import rounds_table, server_table
    from erank_cli.bench.server import ServerBench, run, write

    if doc_tokens < 1 or output_tokens < 1 or min_docs < 1 or rounds < 1:
        raise typer.BadParameter("doc-tokens, output-tokens, min-docs and rounds must be ≥ 1")
    default = "server" if target else "server,raw"
    try:
        bench = ServerBench(
            docs=_ints(docs, "docs"),
            doc_tokens=doc_tokens,
            concurrency=_ints(concurrency, "concurrency"),
            output_tokens=output_tokens,
            min_docs=min_docs,
            rounds=rounds,
            paths=tuple(p.strip() for p in (paths or default).split(",")),
            model=model,
            target=target,
            enforce_eager=enforce_eager,
            dtype=dtype,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    result = asyncio.run(run(bench))
    console = Console()
    console.print(rounds_table(result))
    console.print(server_table(result))
    json_path, png_path = write(result, out)
    console.print(f"wrote {json_path} and {png_path}")


@bench_app.command("budget")
def budget_command(
    docs: Annotated[int, typer.Option(help="documents per request (the window)")] = 50,
    doc_tokens: Annotated[int, typer.Option(help="tokens per document")] = 80,
    think_tokens: Annotated[
        int, typer.Option(help="reasoning tokens the scripted model writes per document")
    ] = 400,
    budgets: Annotated[
        str, typer.Option(help="budgets in % of the full-length time, comma-separated")
    ] = "25,50,75,100,150",
    requests: Annotated[int, typer.Option(help="measured requests per budget")] = 10,
    full_rounds: Annotated[
        int, typer.Option(help="requests without a deadline (median: the full-length time)")
    ] = 5,
    lookups: Annotated[int, typer.Option(help="all-hit requests per cache")] = 20,
    score_cache_url: Annotated[
        str | None,
        typer.Option(help="shared score cache (valkey://HOST:PORT) measured beside in-process"),
    ] = None,
    enforce_eager: Annotated[bool, typer.Option(help="skip graph compilation")] = False,
    dtype: Annotated[str, typer.Option(help="engine dtype")] = "float32",
    out: Annotated[Path, typer.Option(help="folder for budget.json and budget.png")] = Path(
        "bench/out"
    ),
) -> None:
    """Deadline-aware scoring: latency against budgets of % of the full-length time, documents
    full / cut / unscored, thinking tokens, closing margin; the identical search after
    background completion; the cache lookup cost (in process, and shared with --score-cache-url)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from erank_cli.bench.budget import BudgetBench, run, write
    from erank_cli.bench.report import budget_extras_table, budget_table

    if min(docs, doc_tokens, requests, full_rounds, lookups) < 1 or think_tokens < 200:
        raise typer.BadParameter(
            "docs, doc-tokens, requests, full-rounds and lookups must be ≥ 1, think-tokens ≥ 200"
        )
    bench = BudgetBench(
        docs=docs,
        doc_tokens=doc_tokens,
        think_tokens=think_tokens,
        budgets=_ints(budgets, "budgets"),
        requests=requests,
        full_rounds=full_rounds,
        lookups=lookups,
        score_cache_url=score_cache_url,
        enforce_eager=enforce_eager,
        dtype=dtype,
    )
    result = asyncio.run(run(bench))
    console = Console()
    console.print(budget_table(result))
    console.print(budget_extras_table(result))
    json_path, png_path = write(result, out)
    console.print(f"wrote {json_path} and {png_path}")


@bench_app.command("proxy")
def proxy_command(
    engine_url: Annotated[
        str, typer.Option(help="OpenSearch/Elasticsearch URL; an index is created there")
    ],
    reranker: Annotated[
        str | None,
        typer.Option(help="scoring server HOST:PORT for the reranking-on comparison [skipped]"),
    ] = None,
    index: Annotated[str, typer.Option(help="index to (re)create for the searches")] = (
        "erank-bench"
    ),
    searches: Annotated[int, typer.Option(help="searches per target and comparison")] = 200,
    window: Annotated[int, typer.Option(help="hits reranked per search (reranking on)")] = 10,
    out: Annotated[Path, typer.Option(help="folder for proxy.json")] = Path("bench/out"),
) -> None:
    """Searches direct vs through the proxy (reranking off; on with --reranker): medians and
    ratio; the proxy's rewrite and the fusion in isolation, hits per CPU-second."""
    import json

    from erank_cli.bench.proxy import ProxyBench, run
    from erank_cli.bench.report import proxy_table

    if searches < 1 or window < 1:
        raise typer.BadParameter("searches and window must be ≥ 1")
    bench = ProxyBench(
        engine_url=engine_url.rstrip("/"),
        reranker=reranker,
        index=index,
        searches=searches,
        window=window,
    )
    result = asyncio.run(run(bench))
    Console().print(proxy_table(result))
    out.mkdir(parents=True, exist_ok=True)
    (out / "proxy.json").write_text(json.dumps(result, indent=2))
    Console().print(f"wrote {out / 'proxy.json'}")
