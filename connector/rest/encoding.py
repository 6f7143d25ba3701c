"""Request bodies in their ``Content-Encoding``, decoded by the front rather than by aiohttp.

aiohttp decodes a body inside its HTTP parser (``auto_decompress``). A body that did not decode
there, arriving after the headers, failed in the parser while the handler waited for the body:
a deflate stream cut short, sent in two writes, got no answer at all (5 of 5 tries) until the
client gave up. Arriving with the headers, it got aiohttp's ``text/plain`` 400 at HTTP/1.0, as
did every encoding aiohttp cannot decode (``br``, ``zstd``: "Please install Brotli"). So the
front reads the body as sent (within ``client_max_size``) and decodes it here: ``gzip``,
``deflate`` (zlib-wrapped as RFC 9110 says, or raw, as some clients send it) and ``identity``;
any other is a 415 naming the supported ones. Decoding stops at the body limit: a small body
that inflates past it is a 413, never that much memory.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import hdrs, web

from erank_contract.vocabulary import preview

SUPPORTED = ("gzip", "deflate", "identity")
# Bodies larger than this are decoded in a thread: the loop keeps serving other requests.
_INLINE_BYTES = 1 << 20


class BodyError(Exception):
    """A body the front cannot read: ``status`` and error ``kind`` for the error JSON."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body with its ``Content-Encoding`` undone (several, last applied first),
    at most ``limit`` bytes once decoded; ``BodyError`` otherwise."""
    header = request.headers.get(hdrs.CONTENT_ENCODING, "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    for coding in codings:
        if coding not in SUPPORTED and coding != "x-gzip":
            raise BodyError(
                415,
                "unsupported_media_type",
                f"Content-Encoding {preview(coding)} is not supported; "
                f"send one of {', '.join(SUPPORTED)}",
            )
    data = await request.read()
    for coding in reversed(codings):
        if len(data) > _INLINE_BYTES:
            data = await asyncio.to_thread(decode, data, coding, limit)
        else:
            data = decode(data, coding, limit)
    return data


def decode(data: bytes, coding: str, limit: int) -> bytes:
    """``data`` decoded from ``coding`` (one of ``SUPPORTED``), at most ``limit`` bytes."""
    if coding == "identity":
        return data
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits)
    try:
        decoded = decoder.decompress(data, limit + 1)
    except zlib.error as err:
        raise BodyError(
            400, "parse_exception", f"request body cannot be read: it is not {coding} data ({err})"
        ) from None
    if len(decoded) > limit:
        raise BodyError(
            413,
            "http_error",
            f"request body decoded from {coding} is over {limit} bytes; the limit is {limit} bytes",
        )
    if not decoder.eof:
        raise BodyError(
            400, "parse_exception", f"request body cannot be read: its {coding} data ends early"
        )
    return decoded


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (deflate, checksum of the two bytes)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
