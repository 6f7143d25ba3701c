"""Fuzzing the REST front (connector/rest/): generated JSON bodies on its three rerank routes,
then any method, path, query string, header and body.

Whatever arrives, the answer is one of the documented statuses (200, 400, 401, 404, 405, 413,
415, 429), an error is the front's error JSON, no call hangs (each has a deadline) and nothing is
logged at ERROR or with a traceback. The front calls a real scoring server on the session's
engine whose default mode is ``score_only`` (tests/fuzzing.py), so valid bodies are scored fast.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from fuzzing import (
    CALL_TIMEOUT_S,
    CASES,
    FUZZ,
    POOL,
    UINT32_MAX,
    any_floats,
    assert_no_traceback,
    fast_server_fixture,  # noqa: F401  a fixture
    pool_texts,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from connector.rest import create_app, serving
from erank.server import ScoringServer

pytestmark = pytest.mark.engine

TOKEN = "fuzz-token"
MAX_BODY = 2048
ROUTES = {"/v1/rerank": "documents", "/v2/rerank": "documents", "/rerank": "texts"}
DOCUMENTED = {200, 400, 401, 404, 405, 413, 415, 429}

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), any_floats, st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
integers = st.one_of(
    st.integers(-2, 10), st.integers(UINT32_MAX - 1, UINT32_MAX + 1), st.integers()
)
choices = {
    "fusion": ["zscore", "minmax", "rrf", "ZSCORE", "x"],
    "long_documents": ["truncate", "best_passage", "x"],
    "instruction_preset": ["beir", "no-such-preset"],
    "truncation_direction": ["right", "Right", "left"],
}
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "query": st.one_of(pool_texts, st.text(max_size=20)),
    "instruction": st.one_of(pool_texts, st.text(max_size=20)),
    "first_stage_scores": st.lists(any_floats, max_size=4),
    "alpha": any_floats,
    **{name: st.sampled_from(values) for name, values in choices.items()},
    **{name: integers for name in ("top_n", "rank_constant", "passage_overlap")},
    **{name: integers for name in ("max_tokens_per_doc", "priority")},
    **{
        name: st.booleans()
        for name in ("return_documents", "return_reasoning", "raw_scores", "return_text")
    },
    "model": st.text(max_size=10),
}
# Bodies that are not what a JSON parser expects: invalid UTF-8, nesting deeper than any
# parser's recursion limit, NaN, truncated, or not JSON at all.
ODD_BODIES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"null",
            b'{"query": "\xff\xfe", "documents": ["a"], "texts": ["a"]}',
            b'{"query": "q", "documents": [NaN], "texts": [Infinity]}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            b'{"query": "q", "documents": ["a"',
        ]
    ),
)


@st.composite
def bodies(draw: st.DrawFn, documents: str) -> bytes:
    """A JSON object: a few known fields, mostly well typed, else any JSON value; the documents
    mostly from the pool (valid bodies are scored, and the score cache answers repeats)."""
    texts = st.lists(
        st.one_of(pool_texts, pool_texts, pool_texts, st.text(max_size=20)), max_size=4
    )
    body: dict[str, Any] = {"query": draw(st.sampled_from(POOL)), documents: draw(texts)}
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4, unique=True)):
        body[name] = draw(st.one_of(FIELDS[name], FIELDS[name], json_values))
    for name in ("query", documents):
        if draw(st.integers(0, 9)) == 0:
            body.pop(name) if draw(st.booleans()) else body.update({name: draw(json_values)})
    return json.dumps(body).encode()


@pytest_asyncio.fixture(scope="module")
async def front(fast_server: ScoringServer) -> AsyncIterator[str]:
    """The REST front before the score-only server, as ``erank rest`` starts it."""
    async with serving(create_app(f"127.0.0.1:{fast_server.port}", CALL_TIMEOUT_S)) as url:
        yield url
    print(f"\nREST cases sent: {dict(CASES)}")


@pytest_asyncio.fixture(scope="module")
async def guarded_front(fast_server: ScoringServer) -> AsyncIterator[str]:
    """The same with a token and a small body limit (401 and 413 are reachable)."""
    app = create_app(
        f"127.0.0.1:{fast_server.port}", CALL_TIMEOUT_S, token=TOKEN, max_body_bytes=MAX_BODY
    )
    async with serving(app) as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        yield session


async def _send(
    http: aiohttp.ClientSession, method: str, url: URL, headers: dict[str, str], body: bytes
) -> tuple[int, bytes, str]:
    try:
        async with http.request(
            method, url, headers=headers, data=body or None, skip_auto_headers=["Content-Type"]
        ) as answer:
            return answer.status, await answer.read(), answer.content_type
    except aiohttp.ClientResponseError as err:  # aiohttp's 400 to a HEAD it cannot parse
        assert method == "HEAD" and err.status == 400, err  # has a body, which HEAD must not
        return err.status, b"", ""


def _check_error(status: int, raw: bytes, content_type: str) -> None:
    """An error is the front's error JSON, ``{"error": {"type", "reason"}, "status"}``, but
    for aiohttp's own 400 to a request it cannot parse as HTTP (a plain-text line)."""
    if status == 400 and content_type == "text/plain":
        return
    assert content_type == "application/json", (status, raw[:200])
    error = json.loads(raw)
    assert error["status"] == status and error["error"]["type"] and error["error"]["reason"]


@settings(FUZZ, max_examples=1500)
@given(st.sampled_from(sorted(ROUTES)), st.data())
async def test_generated_bodies_get_documented_statuses(
    front: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    route: str,
    data: st.DataObject,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # each example is judged by its own records
    body = data.draw(st.one_of(bodies(ROUTES[route]), ODD_BODIES), label="body")
    headers = {"Content-Type": "application/json"}
    status, raw, content_type = await _send(http, "POST", URL(front + route), headers, body)
    CASES["rest bodies"] += 1
    CASES[f"rest bodies {status}"] += 1
    assert status in DOCUMENTED, (status, raw[:300])
    if status == 200:
        answer = json.loads(raw)
        results = answer if route == "/rerank" else answer["results"]
        assert isinstance(results, list)
    else:
        _check_error(status, raw, content_type)
    assert_no_traceback(caplog)


METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
SEGMENT_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/"
paths = st.one_of(
    st.sampled_from([*ROUTES, "/health", "/", "/v1/rerank/", "//rerank", "/health?x"]),
    st.text(SEGMENT_CHARS, max_size=30).map(lambda p: "/" + p),
)
queries = st.one_of(st.just(""), st.text(SEGMENT_CHARS + "?#[]", max_size=20).map("?{}".format))
authorizations = st.sampled_from(
    [None, f"Bearer {TOKEN}", f"bearer  {TOKEN} ", "Bearer wrong", "Bearer", "", f"Basic {TOKEN}"]
)
content_types = st.sampled_from(
    [None, "application/json", "text/plain", "application/json; charset=latin-1", "*/*", "x"]
)
encodings = st.sampled_from([None, "gzip", "deflate", "br", "identity", "zstd", "x", "gzip, br"])
extra_headers = st.dictionaries(
    st.text(TOKEN_CHARS, min_size=1, max_size=12).filter(
        lambda k: k.lower() not in ("content-length", "transfer-encoding", "host", "expect")
    ),
    st.text(VALUE_CHARS, max_size=30),
    max_size=3,
)


@settings(FUZZ, max_examples=1500)
@given(
    st.sampled_from(METHODS),
    paths,
    queries,
    st.fixed_dictionaries(
        {},
        optional={
            "Authorization": authorizations,
            "Content-Type": content_types,
            "Content-Encoding": encodings,
            "Accept": st.sampled_from(["application/json", "*/*", "text/html"]),
        },
    ),
    extra_headers,
    st.one_of(bodies("documents"), ODD_BODIES, st.binary(min_size=MAX_BODY, max_size=MAX_BODY + 8)),
)
async def test_any_request_gets_a_documented_status(
    guarded_front: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str | None],
    extra: dict[str, str],
    body: bytes,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # each example is judged by its own records
    sent = {k: v for k, v in {**extra, **headers}.items() if v is not None}
    url = URL(guarded_front + path + query, encoded=True)
    status, raw, content_type = await _send(http, method, url, sent, body)
    CASES["rest requests"] += 1
    assert status in DOCUMENTED, (status, raw[:300])
    if status != 200 and method != "HEAD":
        _check_error(status, raw, content_type)
    assert_no_traceback(caplog)
