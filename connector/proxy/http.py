"""HTTP plumbing of the proxy: which headers travel, request bodies as the engine would read
them, and an engine answer read whole (for the searches whose bodies the proxy rewrites)."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Host",
    )
)  # fmt: skip
BODY_HEADERS = frozenset(("content-length", "content-encoding"))
# Headers aiohttp adds to a request that lacks them: a proxy adds none (an engine asked with
# Accept-Encoding compresses its answer, which a client that never asked could not read; a
# bodiless search must not become an application/octet-stream one).
NOT_ADDED = (hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)
_COMPATIBLE = "vnd.elasticsearch+"


@dataclass(frozen=True)
class Upstream:
    """An engine answer read whole: for searches, whose bodies the proxy rewrites."""

    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    json: Any
    millis: float


# What decoding a corrupt body raises: gzip's BadGzipFile is an OSError, a gzip body cut short
# an EOFError, a bad deflate body a zlib.error.
UNDECODABLE = (OSError, EOFError, zlib.error)


def decode_body(request: web.Request, raw: bytes) -> bytes | None:
    """The request body without its Content-Encoding (elasticsearch-py gzips with
    ``http_compress=True``); None for an encoding the proxy does not know; raises one of
    :data:`UNDECODABLE` for a corrupt body."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").lower()
    if encoding == "identity":
        return raw
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return None


def json_body(request: web.Request, raw: bytes) -> tuple[bool, Any]:
    """``(True, parsed body or None)`` for a JSON body; ``(False, None)`` for anything the
    proxy leaves to the engine (another content type, bad JSON: the engine's errors apply)."""
    try:
        data = decode_body(request, raw)
    except UNDECODABLE:
        return False, None
    if data is None:
        return False, None
    if not data.strip():
        return True, None
    if "json" not in request.headers.get(hdrs.CONTENT_TYPE, "application/json"):
        return False, None
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json parses
        return False, None


def body_type(request: web.Request, ndjson: bool = False) -> str:
    """The Content-Type of a body the proxy writes for the client's request: the client's own;
    for a request that had no body, the JSON (or NDJSON) flavour of what it accepts.
    Elasticsearch refuses a body whose type is not of the same compatibility version as the
    ``Accept`` header (elasticsearch-py sends ``compatible-with=8`` with a bodiless
    ``search(q=...)``), so a plain ``application/json`` will not do there."""
    given = request.headers.get(hdrs.CONTENT_TYPE)
    if given:
        return given
    accept = request.headers.get(hdrs.ACCEPT, "").split(",")[0].strip()
    if _COMPATIBLE in accept:
        return accept.replace("+json", "+x-ndjson") if ndjson else accept
    return "application/x-ndjson" if ndjson else "application/json"


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
