"""What ``erank opensearch install`` is told, and the record of what it created.

The record is kept in the search pipeline's ``description`` after ``MARKER`` (see
:mod:`opensearch_plugin.install`), so the cluster itself says what uninstall must remove.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, Field

from opensearch_plugin.templates import TEMPLATE_VERSION

Mode = Literal["native", "ml-commons"]
MARKER = "erank-install:"


_TIME_VALUE = re.compile(r"([0-9]{1,9})(ms|s|m)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, None: 1000}


def parse_time_value(text: str) -> int:
    """Milliseconds of a time value as OpenSearch and Elasticsearch write them (``500ms``,
    ``2s``, ``1m``), which the native processor and ``_inference`` take; a bare number is
    seconds, what ``--timeout`` always meant."""
    match = _TIME_VALUE.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"expected a positive time such as 500ms, 2s or 1m, got {text[:40]!r}")
    return int(match[1]) * _UNIT_MS[match[2]]


def format_time_value(ms: int) -> str:
    """``ms`` as the cluster reads it: whole seconds as ``10s`` (what install always wrote)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class InstallError(RuntimeError):
    """The cluster is not in a state install/uninstall may touch (says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class InstallOptions:
    """What ``erank opensearch install`` is told."""

    endpoint: str  # base URL of the REST front (``erank rest``), e.g. http://10.0.0.5:8080
    pipeline: str = "erank"
    fields: tuple[str, ...] = ("text",)
    mode: Mode = "native"
    window: int = 50
    alpha: float | None = None
    instruction: str | None = None
    timeout_ms: int = 10_000  # of each scoring call (ml-commons: whole seconds only)
    ignore_failure: bool = False
    # the REST front's bearer token (ml-commons only: the native processor reads it from the
    # OpenSearch keystore); ml-commons keeps it encrypted in the connector's credential
    token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def rerank_url(self) -> str:
        return self.endpoint.rstrip("/") + "/v1/rerank"

    def fingerprint(self) -> str:
        """Changes whenever anything sent to the cluster would change (a new token included:
        only this 64-bit digest of all options is stored, never the token)."""
        options = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(f"{TEMPLATE_VERSION}:{options}".encode()).hexdigest()[:16]


class Record(BaseModel):
    """What install created; kept in the pipeline's description after ``MARKER``."""

    mode: Mode
    template_version: int = TEMPLATE_VERSION
    fingerprint: str
    model_group_id: str | None = None
    connector_id: str | None = None
    model_id: str | None = None
    task_ids: list[str] = Field(default_factory=list)
