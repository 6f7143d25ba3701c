"""The ``erank`` command: one sub-command per module of this package, assembled here.

``serve``/``demo`` (``serve.py``) run a scoring server and need the [server] extra; ``rest``,
``proxy``, ``opensearch``, ``elasticsearch`` are the adapters ([connector]); ``eval`` is
``connector.evaluation.command`` ([eval]); ``workbench`` serves the browser workbench. Each
command imports what it runs only when it runs,
so any install lists every command and ``--help`` works everywhere.
"""

from __future__ import annotations

import typer

from connector.evaluation.command import eval_command
from erank_cli import elasticsearch, opensearch, proxy, rest, serve, workbench
from erank_cli.bench.command import bench_app

app = typer.Typer(
    help="ERank reranking for search engines.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(serve.serve)
app.command()(serve.demo)
app.command()(rest.rest)
app.add_typer(opensearch.opensearch_app, name="opensearch")
app.add_typer(elasticsearch.elasticsearch_app, name="elasticsearch")
app.command()(proxy.proxy)
app.command("eval")(eval_command)
app.add_typer(bench_app, name="bench")
app.command()(workbench.workbench)
