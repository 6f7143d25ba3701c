"""Every integer the proxy and the wrappers read from a caller (``from``, ``size`` in the URL or
the body, ``ext.erank`` options, retriever window sizes, ``_msearch`` items) is either taken,
left to the engine (which answers with its own error), or refused with a :class:`ConfigError`
naming the field (the proxy's HTTP 400 in the engine's error JSON). Never another exception: a
value that passes becomes a valid gRPC request. The same answers on real engines through a real
proxy are in tests/proxy_breaker.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from connector.proxy.app import running_proxy
from connector.rewrite.config import ConfigError, ProxyConfig
from connector.rewrite.hits import rerank_request
from connector.rewrite.msearch import plan_items
from connector.rewrite.search import JAVA_INT_MAX, SearchPlan, plan_search

CONFIG = ProxyConfig.model_validate({"default": {"window": 20}})
ANSWER = {
    "hits": {"hits": [{"_id": str(i), "_score": 1.0, "_source": {"text": "t"}} for i in range(3)]}
}
EDGES = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 10_000, 10_001, 300_000, 300_001)
integers = st.one_of(
    st.integers(),
    st.integers(-2, 25),
    st.sampled_from(EDGES),
    st.sampled_from(EDGES).map(lambda n: -n),
)
# what a URL parameter or a careless client sends where a number goes
numberish = st.one_of(
    integers,
    integers.map(str),
    st.sampled_from(["", " 5 ", "--5", "+5", "²", "٣", "5.0", "1e3", "9" * 5000, "abc"]),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
EXT_INTEGERS = ("window", "budget_ms", "rank_constant", "passage_overlap")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@st.composite
def searches(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, Any]]:
    """URL parameters and a body whose numbers are anything."""
    params: dict[str, str] = {}
    body: dict[str, Any] = {"query": {"match": {"text": "quick fox"}}}
    for key in ("from", "size"):
        where = draw(st.sampled_from(["absent", "url", "body"]))
        value = draw(numberish)
        if where == "url" and value is not None:
            params[key] = str(value)
        elif where == "body":
            body[key] = value
    ext = {k: draw(integers) for k in draw(st.sets(st.sampled_from(EXT_INTEGERS)))}
    if "rank_constant" in ext:
        ext["fusion"] = "rrf"
    if "passage_overlap" in ext:
        ext["long_documents"] = "best_passage"
    if ext:
        body["ext"] = {"erank": ext}
    if draw(st.booleans()):
        body["retriever"] = {"rrf": {"retrievers": [], "rank_window_size": draw(numberish)}}
    return params, body


def check(plan: object) -> None:
    """A plan's forwarded window fits the engine, and its gRPC request can be built."""
    if isinstance(plan, SearchPlan):
        assert 0 <= plan.page_from < plan.window and plan.page_size >= 1
        assert plan.body["size"] <= JAVA_INT_MAX
        rerank_request(plan, ANSWER)  # protobuf raises on a value out of its field's range


@settings(max_examples=400, deadline=None)
@given(searches())
def test_every_integer_is_taken_left_to_the_engine_or_refused_by_name(
    search: tuple[dict[str, str], dict[str, Any]],
) -> None:
    params, body = search
    try:
        plan = plan_search("docs", params, body, CONFIG)
    except ConfigError as exc:
        assert str(exc).startswith("[") and "]" in str(exc)  # names the field
        return
    check(plan)


@settings(max_examples=200, deadline=None)
@given(json_values, st.dictionaries(st.sampled_from(["from", "size", "q", "explain"]), st.text()))
def test_any_json_body_is_planned_or_refused(body: Any, params: dict[str, str]) -> None:
    try:
        plan = plan_search(None, params, body, CONFIG)
    except ConfigError:
        return
    check(plan)


@settings(max_examples=100, deadline=None)
@given(st.lists(searches(), min_size=1, max_size=4))
def test_msearch_items_fail_alone(items: list[tuple[dict[str, str], dict[str, Any]]]) -> None:
    """A bad item is an error in its own place; the others are planned."""
    planned = plan_items(None, [({"index": "docs"}, body) for _, body in items], CONFIG)
    assert len(planned) == len(items)
    for item in planned:
        check(item.plan)


def test_the_limits_by_name() -> None:
    query = {"query": {"match": {"text": "fox"}}}
    refused = {
        "[from] + [size] must be at most 2147483647": ({"size": "2147483647", "from": "1"}, {}),
        "[ext.erank.rank_constant] Input should be less than or equal to 4294967295": (
            {},
            {"ext": {"erank": {"fusion": "rrf", "rank_constant": 2**32}}},
        ),
        "[ext.erank.window] Input should be less than or equal to 10000": (
            {},
            {"ext": {"erank": {"window": 10_001}}},
        ),
        "[ext.erank.budget_ms] Input should be greater than or equal to 1": (
            {},
            {"ext": {"erank": {"budget_ms": 0}}},
        ),
    }
    for words, (params, body) in refused.items():
        try:
            plan_search("docs", params, {**query, **body}, CONFIG)
        except ConfigError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"not refused: {words}")


async def test_unparsable_http_is_a_400_and_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request line the proxy's HTTP parser refuses gets aiohttp's 400 and one WARNING line on
    ``aiohttp.server``, not an ERROR traceback (no engine is needed: nothing is forwarded)."""
    caplog.set_level(logging.WARNING)
    async with running_proxy("http://127.0.0.1:9", "127.0.0.1:9") as proxy:
        url = URL(proxy.url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"GET /docs/_search HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage()[:300] for r in bad]
    assert [r.levelno for r in caplog.records if r.name == "aiohttp.server"] == [logging.WARNING]
