"""The ``erank eval`` command line (registered in ``erank_cli/app.py``).

Only typer at import time: ``erank --help`` must not load ir-measures or matplotlib.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from connector.security_options import (
    RerankerCa,
    RerankerCert,
    RerankerKey,
    RerankerServerName,
    RerankerTls,
    RerankerTokenFile,
    client_security,
)


def eval_command(
    collection: Annotated[
        Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    ],
    output: Annotated[
        Path, typer.Option(help="folder for eval.json, TREC runs, alpha_sweep.png")
    ] = Path("eval-results"),
    split: Annotated[str, typer.Option(help="qrels/<split>.tsv to evaluate")] = "test",
    run: Annotated[Path | None, typer.Option("--run", help="first stage: a TREC run file")] = None,
    engine_url: Annotated[
        str | None, typer.Option(help="first stage: BM25 in this engine, e.g. http://host:9200")
    ] = None,
    engine: Annotated[
        Literal["opensearch", "elasticsearch"], typer.Option(help="what --engine-url runs")
    ] = "opensearch",
    index: Annotated[str, typer.Option(help="index to build (or reuse) in the engine")] = (
        "erank-eval"
    ),
    rebuild_index: Annotated[
        bool, typer.Option("--rebuild-index", help="replace an existing index")
    ] = False,
    depth: Annotated[int, typer.Option(help="first-stage hits reranked per query (top-k)")] = 100,
    reranker: Annotated[
        str, typer.Option(help="scoring server(s): host:port, or several comma-separated")
    ] = "127.0.0.1:50051",
    instruction: Annotated[
        str, typer.Option(help="relevance instruction (empty: the server's default)")
    ] = "",
    instruction_preset: Annotated[
        str,
        typer.Option(help="one of the paper's instructions by name, e.g. beir (docs/SCORING.md)"),
    ] = "",
    truncate_length: Annotated[
        int, typer.Option(help="tokens kept of query and of each document")
    ] = 2048,
    alpha: Annotated[float, typer.Option(help="first-stage weight of the hybrid row")] = 0.2,
    sweep_points: Annotated[
        int, typer.Option(help="alphas from 0 to 1 in the sweep (11: step 0.1); 0: none")
    ] = 11,
    batch_size: Annotated[int, typer.Option(help="queries reranked concurrently")] = 4,
    timeout: Annotated[float, typer.Option(help="deadline of each scoring call, seconds")] = 600.0,
    relevance_level: Annotated[
        int, typer.Option(help="lowest judgement counted relevant by RR and R (TREC DL: 2)")
    ] = 1,
    reranker_tls: RerankerTls = False,
    reranker_ca: RerankerCa = None,
    reranker_cert: RerankerCert = None,
    reranker_key: RerankerKey = None,
    reranker_server_name: RerankerServerName = None,
    reranker_token_file: RerankerTokenFile = None,
) -> None:
    """Measure ERank on a BEIR-format collection: first stage, ERank alone and hybrid fusion
    (nDCG@10, RR@10, R@100 by ir-measures), plus an alpha sweep; writes eval.json and a plot."""
    import grpc
    from elasticsearch import ApiError, TransportError
    from opensearchpy import TransportError as OpenSearchError

    from connector.evaluation.report import show
    from connector.evaluation.rerank import RerankOptions
    from connector.evaluation.runner import EvalConfig, run_eval, sweep_alphas

    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        config = EvalConfig(
            collection=collection,
            output=output,
            split=split,
            run_file=run,
            engine_url=engine_url,
            engine=engine,
            index=index,
            rebuild_index=rebuild_index,
            depth=depth,
            reranker=reranker,
            security=client_security(
                reranker_tls,
                reranker_ca,
                reranker_cert,
                reranker_key,
                reranker_server_name,
                reranker_token_file,
            ),
            rerank=RerankOptions(
                instruction=instruction,
                instruction_preset=instruction_preset,
                truncate_length=truncate_length,
                alpha=alpha,
                sweep=sweep_alphas(sweep_points),
                batch_size=batch_size,
                timeout=timeout,
            ),
            relevance_level=relevance_level,
        )
        result = asyncio.run(run_eval(config, console))
    except (ValueError, OSError) as err:
        message = str(err)
    except grpc.RpcError as err:
        message = f"scoring server {reranker}: {err.code().name}: {err.details()}"
    except (OpenSearchError, ApiError, TransportError) as err:
        message = f"{engine} at {engine_url}: {err}"
    else:
        show(result, console)
        return
    # as it is, on one line: rich would wrap it at the terminal's width (80 columns in a pipe)
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(1)
