"""Fuzzing the query proxy in front of a real engine: generated searches (``ext.erank``,
``from``/``size``, URL parameters, bodies that are not JSON, compressed or truncated bodies) on
its search, multi-search and pass-through paths.

The proxy always answers, and never with a 5xx where the engine itself, asked directly, answers
below 500 (it may hang up: the proxy then says 502); no call hangs; nothing is logged at ERROR
or with a traceback. Collected through ``test_proxy_engines.py`` (which imports the test) so it
runs on its engines, corpus and proxy, each started once: 250 cases on each of the 4 engines.
Query texts come from a small pool: a reranked window is scored by the engine once, then cached.
"""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import aiohttp
import pytest
from engines import RunningEngine
from fuzzing import CALL_TIMEOUT_S, CASES, FUZZ, UINT32_MAX, any_floats, assert_no_traceback
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from connector.proxy.app import RunningProxy

PATHS = [
    "/docs/_search", "/_search", "/docs,docs-off/_search", "/docs-off/_search", "/docs/_msearch",
    "/_msearch", "/docs/_count", "/no-such-index/_search", "/_erank/stats", "/docs/_search/x",
]  # fmt: skip
QUERIES = ["quick fox", "lazy dog", "fox"]
DEEP = b"[" * 100_000 + b"]" * 100_000
integers = st.one_of(st.integers(-2, 30), st.sampled_from([UINT32_MAX, 2**31, 2**63]))
scalars = st.one_of(st.none(), st.booleans(), integers, any_floats, st.text(max_size=6))
OVERRIDES = {
    "enabled": st.booleans(),
    "window": integers,
    "fields": st.lists(st.sampled_from(["text", "tag", "nope"]), max_size=2),
    "truncate_length": integers,
    "alpha": any_floats,
    "fusion": st.sampled_from(["zscore", "minmax", "rrf", "x"]),
    "rank_constant": integers,
    "long_documents": st.sampled_from(["truncate", "best_passage", "x"]),
    "passage_overlap": integers,
    "explain": st.booleans(),
    "query_text": st.sampled_from(QUERIES),
    "instruction_preset": st.sampled_from(["beir", "nope"]),
}


@st.composite
def search_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"query": {"match": {"text": draw(st.sampled_from(QUERIES))}}}
    for key, value in (("size", integers), ("from", integers), ("sort", scalars)):
        if draw(st.integers(0, 3)) == 0:
            body[key] = draw(value)
    if draw(st.booleans()):
        fields = draw(st.lists(st.sampled_from(sorted(OVERRIDES)), max_size=3, unique=True))
        erank = {name: draw(OVERRIDES[name]) for name in fields}
        body["ext"] = {"erank": draw(st.one_of(st.just(erank), scalars))}
    return body


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """(body, headers): JSON, NDJSON (multi-search), not JSON; plain, gzipped or cut short."""
    body = draw(search_bodies())
    kind = draw(st.sampled_from(["json", "json", "ndjson", "bytes", "none", "deep"]))
    raw = {
        "json": json.dumps(body).encode(),
        "ndjson": f"{{}}\n{json.dumps(body)}\n".encode(),
        "bytes": draw(st.binary(max_size=30)),
        "none": b"",
        "deep": DEEP,  # deeper than Python's json module can parse
    }[kind]
    headers = {"Content-Type": "application/x-ndjson" if kind == "ndjson" else "application/json"}
    encoding = draw(st.sampled_from([None, None, "gzip", "gzip-cut", "deflate", "br"]))
    if encoding == "gzip":
        raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    elif encoding is not None and raw:
        raw, headers["Content-Encoding"] = gzip.compress(raw)[:-4], encoding.split("-")[0]
    return raw, headers


url_params = st.dictionaries(
    st.sampled_from(["size", "from", "q", "explain", "filter_path", "sort", "x"]),
    st.one_of(integers.map(str), st.sampled_from(["fox", "", "true", "hits.hits._id", "n:asc"])),
    max_size=3,
)


async def _status(
    session: aiohttp.ClientSession, method: str, url: URL, raw: bytes, headers: dict[str, str]
) -> int:
    """The answer's status; 0 when the server closes the connection without one."""
    try:
        async with session.request(method, url, data=raw or None, headers=headers) as answer:
            await answer.read()
            return answer.status
    except aiohttp.ServerDisconnectedError:
        return 0


@settings(FUZZ, max_examples=250)
@given(
    st.sampled_from(["GET", "POST", "POST", "PUT"]), st.sampled_from(PATHS), url_params, payloads()
)
async def test_proxy_adds_no_server_error(
    corpus: RunningEngine,
    proxy: RunningProxy,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    params: dict[str, str],
    payload: tuple[bytes, dict[str, str]],
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # each example is judged by its own records
    raw, headers = payload
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        status = await _status(session, method, URL(proxy.url + path) % params, raw, headers)
        CASES[f"proxy {corpus.kind}-{corpus.version}"] += 1
        assert status != 0  # the proxy always answers
        if status >= 500:  # e.g. 502 when the engine hangs up on a body it cannot decode
            direct = await _status(session, method, URL(corpus.url + path) % params, raw, headers)
            assert direct == 0 or direct >= 500, (status, direct)
    assert_no_traceback(caplog)
