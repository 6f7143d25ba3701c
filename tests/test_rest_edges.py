"""The REST front's edges on a raw socket, as a client that writes its own HTTP meets them:
bodies in a ``Content-Encoding`` (whole, or with the headers and the body in separate writes),
and malformed request lines and headers. Every request gets an HTTP answer, an error is the
front's error JSON, and nothing waits for a client's timeout.

The front here has no scoring server behind it (port 1 refuses connections): every body these
tests send is refused before scoring, and a valid one gets the 503 that says so.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import string
import time
import zlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.rest import create_app, serving

MAX_BODY = 4096
ANSWER_S = 5.0  # a hang would wait for the client; every answer here takes milliseconds
PAYLOAD = json.dumps({"query": "q", "documents": ["a", "b"]}).encode()


@pytest_asyncio.fixture
async def port() -> AsyncIterator[int]:
    async with serving(create_app("127.0.0.1:1", timeout=2.0, max_body_bytes=MAX_BODY)) as url:
        yield int(url.rsplit(":", 1)[1])


async def exchange(port: int, *writes: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends ``writes`` one at a time (50 ms apart), reads the answer until the connection
    closes or a whole response is in: (status, headers, body); status 0 if closed unanswered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_S)
    except asyncio.IncompleteReadError as closed:
        assert not closed.partial, closed.partial
        return 0, {}, b""
    finally:
        writer.close()
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), ANSWER_S)
    return int(status_line.split()[1]), headers, body


def post(body: bytes, encoding: str) -> bytes:
    return (
        f"POST /v1/rerank HTTP/1.1\r\nHost: erank\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("split", [False, True], ids=["one write", "headers, then body"])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", raw_deflate(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD)),
        ("gzip, identity", gzip.compress(PAYLOAD)),
    ],
    ids=["deflate", "raw deflate", "gzip", "gzip+identity"],
)
async def test_an_encoded_body_is_decoded(
    port: int, encoding: str, body: bytes, split: bool
) -> None:
    head = post(body, encoding)
    status, _, answer = await exchange(port, *((head, body) if split else (head + body,)))
    assert status == 503, answer  # decoded and valid: it went on to the (absent) scoring server
    assert json.loads(answer)["error"]["type"] == "connection_error"


@pytest.mark.parametrize("split", [False, True], ids=["one write", "headers, then body"])
@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("deflate", zlib.compress(PAYLOAD)[:-6], "its deflate data ends early"),
        ("deflate", b"not deflate at all", "it is not deflate data"),
        ("gzip", b"not gzip at all", "it is not gzip data"),
    ],
    ids=["deflate cut short", "not deflate", "not gzip"],
)
async def test_a_body_not_in_its_encoding_is_400_at_once(
    port: int, encoding: str, body: bytes, reason: str, split: bool
) -> None:
    """Was: deflate cut short, headers and body in two writes, never answered (5 of 5)."""
    head = post(body, encoding)
    began = time.monotonic()
    status, headers, answer = await exchange(port, *((head, body) if split else (head + body,)))
    assert time.monotonic() - began < 2.0
    assert (status, headers["content-type"]) == (400, "application/json")
    assert reason in json.loads(answer)["error"]["reason"]


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_encoding_the_front_cannot_decode_is_415_naming_the_supported_ones(
    port: int, encoding: str
) -> None:
    """Was: aiohttp's text/plain 400 at HTTP/1.0, "Please install `Brotli`"."""
    status, headers, answer = await exchange(port, post(b"x" * 10, encoding) + b"x" * 10)
    error = json.loads(answer)
    assert (status, error["status"]) == (415, 415)
    assert headers["content-type"].startswith("application/json")
    unsupported = encoding.split(", ")[-1]
    assert error["error"]["reason"] == (
        f"Content-Encoding '{unsupported}' is not supported; send one of gzip, deflate, identity"
    )


async def test_a_body_that_inflates_past_the_limit_is_413(port: int) -> None:
    bomb = zlib.compress(b"[" * (MAX_BODY * 100))  # ~1 KB on the wire
    status, _, answer = await exchange(port, post(bomb, "deflate") + bomb)
    assert status == 413
    assert f"the limit is {MAX_BODY} bytes" in json.loads(answer)["error"]["reason"]


TOKEN = st.text(string.ascii_letters + "-", min_size=1, max_size=10)
ANY_LINE = st.binary(max_size=40).filter(lambda b: b"\r\n" not in b and b"\n" not in b)
request_lines = st.one_of(
    st.tuples(st.sampled_from(["GET", "POST", "PUT", "BREW", "get", ""]), st.text(max_size=20)).map(
        lambda m: f"{m[0]} /{m[1]} HTTP/1.1".encode("utf-8", "surrogateescape")
    ),
    ANY_LINE,
    st.sampled_from([b"GET / HTTP/9.9", b"GET /health HTTP/1.1 extra", b"POST", b" / HTTP/1.1"]),
)
header_lines = st.lists(
    st.one_of(
        st.tuples(TOKEN, st.text(max_size=20)).map(
            lambda kv: f"{kv[0]}: {kv[1]}".encode("utf-8", "surrogateescape")
        ),
        ANY_LINE,
        st.sampled_from(
            [
                b"Content-Length: -1",
                b"Content-Length: 1x",
                b"Content-Length: 99999999999999999999",
                b"Transfer-Encoding: chunked",
                b"Transfer-Encoding: gzip",
                b"Content-Encoding: deflate",
                b" folded: value",
                b"no colon",
            ]
        ),
    ),
    max_size=5,
)


@settings(max_examples=300)
@given(request_lines, header_lines, st.binary(max_size=64))
async def test_a_malformed_request_gets_an_http_answer(
    request_line: bytes, headers: list[bytes], body: bytes
) -> None:
    """Whatever the request line and headers, an answer: the front's own, or aiohttp's plain
    400 to what it cannot parse as HTTP; never a connection closed unanswered."""
    app = create_app("127.0.0.1:1", timeout=2.0, max_body_bytes=MAX_BODY)
    async with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        raw = b"\r\n".join([request_line, b"Host: erank", *headers]) + b"\r\n\r\n" + body
        status, _, _ = await exchange(port, raw)
    assert 200 <= status < 600, raw
