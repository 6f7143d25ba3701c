"""``erank proxy``: the drop-in Elasticsearch/OpenSearch endpoint ([connector] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from erank_cli.common import LogFormat, MetricsHost, MetricsPort, Reranker, fail, observability


def proxy(
    upstream: Annotated[
        str,
        typer.Option(help="engine URL (Elasticsearch 8/9, OpenSearch 2/3), e.g. http://host:9200"),
    ],
    reranker: Reranker = "127.0.0.1:50051",
    listen: Annotated[str, typer.Option(help="host:port to serve on")] = "127.0.0.1:9201",
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of per-index settings (docs/PROXY.md)"),
    ] = None,
    log_format: LogFormat = "text",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
) -> None:
    """Serve a drop-in Elasticsearch/OpenSearch endpoint whose searches are reranked by ERank."""
    from connector.proxy.app import run as run_proxy
    from connector.rewrite.config import ConfigError, load_config

    try:
        settings = load_config(config)
    except ConfigError as exc:
        raise fail(f"invalid proxy config: {exc}", code=2) from exc
    observability("erank-proxy", log_format)
    run_proxy(
        upstream,
        reranker,
        listen=listen,
        config=settings,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
