"""``erank elasticsearch install``: ERank as an Elasticsearch ``rerank`` inference endpoint."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from erank_cli.common import (
    Insecure,
    Preset,
    RestToken,
    cluster_errors,
    resolve_instruction,
    time_value,
)

elasticsearch_app = typer.Typer(help="Install ERank as an Elasticsearch inference endpoint.")


@elasticsearch_app.command("install")
def elasticsearch_install(
    elasticsearch: Annotated[
        str, typer.Option("--elasticsearch", help="cluster URL, e.g. https://user:pass@host:9200")
    ],
    endpoint: Annotated[str, typer.Option(help="REST front base URL the cluster can reach")],
    inference_id: Annotated[str, typer.Option(help="inference endpoint id")] = "erank",
    instruction: Annotated[str | None, typer.Option(help="relevance instruction")] = None,
    instruction_preset: Preset = None,
    timeout: Annotated[
        int,
        typer.Option(parser=time_value, metavar="TIME", help="validation call timeout: 2s, 1m"),
    ] = "30s",  # type: ignore[assignment]  # typer parses the default too
    field: Annotated[str, typer.Option(help="field for the printed example")] = "text",
    api_key: Annotated[str | None, typer.Option(help="Elasticsearch API key")] = None,
    insecure: Insecure = False,
    token: RestToken = None,
) -> None:
    """Create a `rerank` inference endpoint (service `custom`) calling the REST front, and print
    a `text_similarity_reranker` search that uses it."""
    from opensearch_plugin.elasticsearch import connect, install, retriever_example

    console = Console()
    with cluster_errors():
        answer = install(
            connect(elasticsearch, verify_certs=not insecure, api_key=api_key),
            endpoint,
            inference_id=inference_id,
            instruction=resolve_instruction(instruction, instruction_preset),
            timeout_ms=timeout,
            token=token,
        )
    console.print_json(data=answer)
    console.print("Search with it (POST /<index>/_search):")
    console.print_json(data=retriever_example(inference_id, field))
