"""``erank rest``: the REST front that OpenSearch and Elasticsearch call ([connector] extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from connector.security_options import (
    RerankerCa,
    RerankerCert,
    RerankerKey,
    RerankerServerName,
    RerankerTls,
    RerankerTokenFile,
    client_security,
)
from erank_cli.common import LogFormat, MetricsHost, MetricsPort, Reranker, observability


def rest(
    reranker: Reranker = "127.0.0.1:50051",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    timeout: Annotated[float, typer.Option(help="deadline of each scoring call, seconds")] = 30.0,
    reranker_tls: RerankerTls = False,
    reranker_ca: RerankerCa = None,
    reranker_cert: RerankerCert = None,
    reranker_key: RerankerKey = None,
    reranker_server_name: RerankerServerName = None,
    reranker_token_file: RerankerTokenFile = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ERANK_REST_TOKEN",
            show_default=False,
            help="require 'Authorization: Bearer <token>' on every route but /health "
            "(prefer the environment variable: a flag shows in the process list)",
        ),
    ] = None,
    log_format: LogFormat = "text",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
) -> None:
    """Serve the REST front (POST /v1/rerank and /v2/rerank in Cohere's shapes, POST /rerank in
    TEI's, GET /health) over gRPC.

    What OpenSearch (our processor or ml-commons), Elasticsearch's inference API, and Cohere's
    and TEI's clients call.
    """
    from connector.rest import run

    observability("erank-rest", log_format)
    security = client_security(
        reranker_tls,
        reranker_ca,
        reranker_cert,
        reranker_key,
        reranker_server_name,
        reranker_token_file,
    )
    run(
        reranker,
        host=host,
        port=port,
        timeout=timeout,
        token=token,
        security=security,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
