"""``erank workbench``: the relevance workbench in the browser ([connector] and [eval] extras)."""

from __future__ import annotations

from pathlib import Path
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
from erank_cli.common import LogFormat, Reranker, observability


def workbench(
    engine: Annotated[
        str,
        typer.Option(help="engine URL (Elasticsearch 8/9, OpenSearch 2/3), e.g. http://host:9200"),
    ],
    reranker: Reranker = "127.0.0.1:50051",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8090,
    workspace: Annotated[
        Path, typer.Option(help="folder of the judgments (queries.jsonl, qrels/test.tsv)")
    ] = Path("erank-workbench"),
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ERANK_WORKBENCH_TOKEN",
            show_default=False,
            help="require 'Authorization: Bearer <token>' on /api/* (the page asks for it; "
            "prefer the environment variable: a flag shows in the process list)",
        ),
    ] = None,
    reranker_tls: RerankerTls = False,
    reranker_ca: RerankerCa = None,
    reranker_cert: RerankerCert = None,
    reranker_key: RerankerKey = None,
    reranker_server_name: RerankerServerName = None,
    reranker_token_file: RerankerTokenFile = None,
    log_format: LogFormat = "text",
) -> None:
    """Serve the relevance workbench: first stage and ERank side by side with the model's
    reasons, judgments saved as TREC qrels, erank eval on the judged queries."""
    from connector.workbench import create_app, run

    observability("erank-workbench", log_format)
    security = client_security(
        reranker_tls,
        reranker_ca,
        reranker_cert,
        reranker_key,
        reranker_server_name,
        reranker_token_file,
    )
    app = create_app(engine, reranker, workspace, token=token, security=security)
    run(app, host=host, port=port)
