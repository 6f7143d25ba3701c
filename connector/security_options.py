"""The ``--reranker-*`` flags of every command that calls a scoring server (``erank rest``,
``erank eval``): TLS, a client certificate and a bearer token (:mod:`erank_contract.security`).

Only typer and pydantic at import time: ``erank --help`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from erank_contract.security import ClientSecurity

RerankerCa = Annotated[
    Path | None, typer.Option(help="PEM CA of the scoring server's TLS certificate")
]
RerankerCert = Annotated[
    Path | None, typer.Option(help="PEM client certificate for mutual TLS (with --reranker-key)")
]
RerankerKey = Annotated[Path | None, typer.Option(help="PEM private key of --reranker-cert")]
RerankerTls = Annotated[
    bool,
    typer.Option("--reranker-tls", help="TLS with the system's CAs (implied by --reranker-ca)"),
]
RerankerServerName = Annotated[
    str | None, typer.Option(help="name to check the scoring server's certificate against")
]
RerankerTokenFile = Annotated[
    Path | None,
    typer.Option(help="file holding the scoring server's bearer token (or ERANK_RERANKER_TOKEN)"),
]


def client_security(
    tls: bool,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_name: str | None,
    token_file: Path | None,
) -> ClientSecurity:
    """The ``ClientSecurity`` of the ``--reranker-*`` flags; the token from
    ``ERANK_RERANKER_TOKEN`` when no file is given (never a flag: ``ps`` would show it)."""
    from pydantic import ValidationError

    from erank_contract.security import ClientSecurity

    token = None if token_file else os.environ.get("ERANK_RERANKER_TOKEN") or None
    try:
        return ClientSecurity.model_validate(
            dict(
                tls=tls,
                tls_ca=ca,
                tls_cert=cert,
                tls_key=key,
                tls_server_name=server_name,
                token=token,
                token_file=token_file,
            )
        )
    except ValidationError as err:
        raise typer.BadParameter(err.errors()[0]["msg"].removeprefix("Value error, ")) from err
