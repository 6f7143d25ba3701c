"""``erank rest``: the REST front that OpenSearch and Elasticsearch call ([connector] extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from erank_cli.common import Reranker


def rest(
    reranker: Reranker = "127.0.0.1:50051",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    timeout: Annotated[float, typer.Option(help="deadline of each scoring call, seconds")] = 30.0,
) -> None:
    """Serve the REST front (POST /v1/rerank in Cohere's shape, GET /health) over gRPC.

    What OpenSearch (our processor or ml-commons) and Elasticsearch's inference API call.
    """
    from connector.rest import run

    run(reranker, host=host, port=port, timeout=timeout)
