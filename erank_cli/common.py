"""What several ``erank`` commands share: option types, instruction presets, error reporting.

Errors are printed as plain text, not through rich: rich reads ``[...]`` as markup, so a message
quoting a field (``[window]``) or a cluster's refusal lost its text or raised ``MarkupError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

Model = Annotated[str | None, typer.Option(help="Hugging Face id or local path of an ERank model")]
Config = Annotated[Path | None, typer.Option("--config", help="YAML file of server settings")]
Preset = Annotated[
    str | None,
    typer.Option(help="one of the paper's instructions by name (docs/SCORING.md), e.g. beir"),
]
Insecure = Annotated[bool, typer.Option("--insecure", help="do not verify TLS certificates")]
RestToken = Annotated[
    str | None,
    typer.Option(
        envvar="ERANK_REST_TOKEN",
        show_envvar=True,
        help="the REST front's bearer token, stored by the cluster as a secret",
    ),
]
Reranker = Annotated[
    str, typer.Option(help="scoring server(s): host:port, or several comma-separated")
]
LogFormat = Annotated[
    Literal["text", "json"],
    typer.Option(
        envvar="ERANK_LOG_FORMAT",
        help="log lines as text, or one JSON object each (request_id, trace_id)",
    ),
]


def observability(service: str, log_format: Literal["text", "json"]) -> None:
    """Logging with request ids in ``log_format``, and traces when the standard ``OTEL_*``
    variables ask for them (erank_contract/telemetry.py); ``service`` names the process there."""
    from erank_contract.telemetry import configure_logging, setup_tracing

    configure_logging(log_format)
    setup_tracing(service)


# One pair for `erank serve`, `erank rest` and `erank proxy`: /metrics on a port of its own.
MetricsPort = Annotated[
    int | None, typer.Option(help="serve Prometheus /metrics on this port [off]")
]
MetricsHost = Annotated[
    str | None, typer.Option(help="address of /metrics; 0.0.0.0 opens it [127.0.0.1]")
]


def resolve_instruction(text: str | None, preset: str | None) -> str | None:
    """The instruction text to install: given, or a preset's (resolved here, so every route,
    ml-commons and Elasticsearch included, sends the paper's exact words)."""
    from erank_contract.instructions import PRESETS

    if preset is None:
        return text
    if text is not None:
        raise typer.BadParameter("give --instruction or --instruction-preset, not both")
    if preset not in PRESETS:
        known = ", ".join(PRESETS)
        raise typer.BadParameter(f"unknown preset {preset[:40]!r}; known: {known}")
    return PRESETS[preset]


def time_value(text: str) -> int:
    """Milliseconds of ``--timeout``: ``500ms``, ``2s``, ``1m`` like the clusters' own time values
    (a bare number is seconds)."""
    from opensearch_plugin.options import parse_time_value

    try:
        return parse_time_value(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr as it is (one line stays one line: no markup, no
    wrapping at the terminal's width); the caller raises what this returns."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def needs_extra(command: str) -> Iterator[None]:
    """A server command in an install without the server says what to install, instead of a
    ModuleNotFoundError traceback (a connector-only install lists ``erank serve`` but has no
    numpy)."""
    try:
        yield
    except ModuleNotFoundError as err:
        raise fail(
            f"erank {command} needs {err.name}, which is not installed: pip install"
            " 'erank-search[server,vllm]' (vLLM's CPU build: bash scripts/setup)"
        ) from err


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """A refusal by the cluster is the user's to fix: its message, exit 1, no traceback."""
    from httpx import HTTPError
    from opensearchpy import TransportError

    from opensearch_plugin.elasticsearch import ElasticsearchError
    from opensearch_plugin.options import InstallError

    try:
        yield
    except (InstallError, ElasticsearchError, TransportError, HTTPError) as err:
        raise fail(str(err)) from err
