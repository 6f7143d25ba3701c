"""``erank opensearch install/uninstall/status``: ERank as an OpenSearch search pipeline."""

from __future__ import annotations

from typing import Annotated, Literal

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

opensearch_app = typer.Typer(help="Install ERank as an OpenSearch search pipeline.")
OpenSearchUrl = Annotated[
    str, typer.Option("--opensearch", help="cluster URL, e.g. https://user:pass@host:9200")
]
Pipeline = Annotated[str, typer.Option(help="search pipeline name")]


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
    timeout: Annotated[
        int,
        typer.Option(
            parser=time_value, metavar="TIME", help="per-search call timeout: 500ms, 2s, 1m"
        ),
    ] = "10s",  # type: ignore[assignment]  # typer parses the default too
    ignore_failure: Annotated[
        bool, typer.Option(help="set ignore_failure on the processor")
    ] = False,
    insecure: Insecure = False,
    token: RestToken = None,
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
        instruction=resolve_instruction(instruction, instruction_preset),
        timeout_ms=timeout,
        ignore_failure=ignore_failure,
        token=token,
    )
    with cluster_errors():
        result = install(connect(opensearch, verify_certs=not insecure), options)
    Console().print_json(
        data={"action": result.action, "pipeline": result.pipeline, **result.record.model_dump()}
    )


@opensearch_app.command("uninstall")
def opensearch_uninstall(
    opensearch: OpenSearchUrl, pipeline: Pipeline = "erank", insecure: Insecure = False
) -> None:
    """Remove the pipeline and exactly what install created for it (refused while an index has
    it as index.search.default_pipeline)."""
    from opensearch_plugin.install import connect, uninstall

    with cluster_errors():
        removed = uninstall(connect(opensearch, verify_certs=not insecure), pipeline)
    Console().print_json(data={"pipeline": pipeline, "removed": removed})


@opensearch_app.command("status")
def opensearch_status(
    opensearch: OpenSearchUrl, pipeline: Pipeline = "erank", insecure: Insecure = False
) -> None:
    """Show what is installed under the pipeline name."""
    from opensearch_plugin.install import connect, status

    with cluster_errors():
        answer = status(connect(opensearch, verify_certs=not insecure), pipeline)
    Console().print_json(data=answer)
