"""Properties of the proxy's request and response rewriting (no engine, no scoring server).

The rewriting is pure: a request body in, a plan out; an engine answer plus the scoring
server's ranking in, the user's page out. The rankings here are ``erank.v1`` messages built from
hypothesis' permutations, i.e. any order the server could return.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.rewrite.config import ConfigError, IndexConfig, ProxyConfig, load_config
from connector.rewrite.hits import (
    MalformedResponse,
    Timings,
    failed_open_body,
    hit_text,
    rerank_request,
    reranked_body,
    reranked_order,
)
from connector.rewrite.msearch import forward_pairs, parse_ndjson, place_responses, plan_items
from connector.rewrite.search import SearchPlan, Skip, plan_search, query_text, route
from erank_contract.v1 import reranker_pb2 as pb

QUERY = {"match": {"text": "quick fox"}}
TIMINGS = Timings(1.0, 2.0)


def bm25_hits(count: int) -> list[dict[str, Any]]:
    """``count`` hits in BM25 order (strictly decreasing scores), each with a text."""
    return [
        {"_index": "i", "_id": f"h{i}", "_score": 100.0 - i, "_source": {"text": f"t{i}"}}
        for i in range(count)
    ]


def engine_answer(plan: SearchPlan, hits: list[dict[str, Any]]) -> dict[str, Any]:
    """What the engine returns for the plan's rewritten request over a result list ``hits``."""
    body = plan.body
    page = hits[body["from"] : body["from"] + body["size"]]
    return {
        "took": 3,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(hits), "relation": "eq"},
            "max_score": hits[0]["_score"] if hits else None,
            "hits": copy.deepcopy(page),
        },
    }


def ranking(order: list[int], fused: bool = True) -> pb.RerankResponse:
    """A scoring-server answer putting window positions in ``order``, best first."""
    results = [
        pb.RerankResult(
            id=str(i),
            index=i,
            rank_score=float(len(order) - rank),
            hybrid_score=float(len(order) - rank) / 10 if fused else None,
            status=pb.RESULT_STATUS_OK,
        )
        for rank, i in enumerate(order)
    ]
    ordered = pb.ORDERING_HYBRID_SCORE if fused else pb.ORDERING_RANK_SCORE
    return pb.RerankResponse(results=results, model="m", ordered_by=ordered)


def config(window: int) -> ProxyConfig:
    return ProxyConfig(default=IndexConfig(window=window))


def user_page(
    hits: list[dict[str, Any]], window: int, page_from: int, size: int, order: list[int]
) -> list[str]:
    """The proxy's page for one request, over an engine holding ``hits`` (BM25 order)."""
    body = {"query": QUERY, "from": page_from, "size": size}
    plan = plan_search("i", {}, body, config(window))
    if isinstance(plan, Skip):
        assert plan.reason == "past_window"
        return [h["_id"] for h in hits[page_from : page_from + size]]
    out = reranked_body(plan, engine_answer(plan, hits), ranking(order), [False] * len(order),
                        TIMINGS)  # fmt: skip
    return [h["_id"] for h in out["hits"]["hits"]]


@st.composite
def bm25_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, list[int]]:
    count = draw(st.integers(0, 60))
    window = draw(st.integers(1, 30))
    order = draw(st.permutations(list(range(min(window, count)))))
    return bm25_hits(count), window, order


@given(bm25_case(), st.integers(0, 40), st.integers(1, 30), st.booleans())
def test_reranked_page_is_cut_from_a_permutation_of_the_window(
    case: tuple[list[dict[str, Any]], int, list[int]], page_from: int, size: int, fused: bool
) -> None:
    hits, window, order = case
    body = {"query": QUERY, "from": page_from, "size": size}
    plan = plan_search("i", {}, body, config(window))
    if page_from >= window:
        assert isinstance(plan, Skip) and plan.reason == "past_window"
        return
    assert isinstance(plan, SearchPlan)
    assert plan.body["from"] == 0 and plan.body["size"] == max(window, page_from + size)
    answer = engine_answer(plan, hits)
    out = reranked_body(plan, answer, ranking(order, fused), [False] * len(order), TIMINGS)
    window_ids = [h["_id"] for h in hits[:window]]
    everything = [window_ids[i] for i in order] + [h["_id"] for h in hits[window:]]
    page = [h["_id"] for h in out["hits"]["hits"]]
    assert page == everything[page_from : page_from + size]
    assert sorted(everything[: len(window_ids)]) == sorted(window_ids)  # a permutation
    assert out["hits"]["total"] == answer["hits"]["total"]
    reranked = [h["_score"] for h in out["hits"]["hits"] if h["_id"] in window_ids]
    lowest = min(
        (r.hybrid_score if fused else r.rank_score for r in ranking(order, fused).results),
        default=0.0,
    )
    for hit in out["hits"]["hits"]:
        info = hit["fields"]["_erank"][0]
        assert info["first_stage_score"] == 100.0 - info["first_stage_rank"] + 1
        if hit["_id"] in window_ids:
            assert info["relevance_score"] == hit["_score"] and "below_window" not in info
        else:  # below the window: under every reranked hit, min - 1 - k, BM25 order kept
            assert info["below_window"] is True and set(info) == {
                "first_stage_score",
                "first_stage_rank",
                "below_window",
            }
            assert hit["_score"] == lowest - 1 - (info["first_stage_rank"] - len(window_ids) - 1)
            assert all(hit["_score"] < score for score in reranked)
    if order:
        top = max(len(order) / 10 if fused else float(len(order)), 0)
        assert out["hits"]["max_score"] == top
    assert out["ext"]["erank"]["status"] == "reranked"


@settings(max_examples=60)
@given(bm25_case(), st.integers(1, 12))
def test_pages_tile_the_order_without_overlap_or_skip(
    case: tuple[list[dict[str, Any]], int, list[int]], size: int
) -> None:
    hits, window, order = case
    tiled: list[str] = []
    for page_from in range(0, len(hits) + size, size):
        tiled += user_page(hits, window, page_from, size, order)
    window_ids = [h["_id"] for h in hits[:window]]
    expected = [window_ids[i] for i in order] + [h["_id"] for h in hits[window:]]
    assert tiled == expected
    assert len(set(tiled)) == len(hits)


@given(bm25_case(), st.integers(0, 40), st.integers(1, 30))
def test_failed_open_page_is_the_engines_own(
    case: tuple[list[dict[str, Any]], int, list[int]], page_from: int, size: int
) -> None:
    hits, window, _ = case
    plan = plan_search("i", {}, {"query": QUERY, "from": page_from, "size": size}, config(window))
    if isinstance(plan, Skip):
        return
    out = failed_open_body(plan, engine_answer(plan, hits), "timeout", "slow", TIMINGS)
    assert out["hits"]["hits"] == hits[page_from : page_from + size]
    assert out["ext"]["erank"]["status"] == "failed" and out["ext"]["erank"]["fail_open"]


@given(st.integers(1, 20), st.data())
def test_anything_but_a_permutation_is_refused(count: int, data: st.DataObject) -> None:
    indices = data.draw(st.lists(st.integers(0, count), max_size=count + 2))
    response = pb.RerankResponse(results=[pb.RerankResult(id=str(i), index=i) for i in indices])
    if sorted(indices) == list(range(count)):
        assert reranked_order(count, response) == indices
    else:
        with pytest.raises(MalformedResponse):
            reranked_order(count, response)


TEXT = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
QUERIES = st.one_of(
    st.builds(lambda t: {"match": {"text": t}}, TEXT),
    st.builds(lambda t: {"match_phrase": {"text": {"query": t}}}, TEXT),
    st.builds(lambda t: {"multi_match": {"query": t, "fields": ["text", "title"]}}, TEXT),
    st.builds(
        lambda a, b: {"bool": {"must": [{"match": {"text": a}}], "filter": [{"term": {"x": b}}]}},
        TEXT,
        TEXT,
    ),
)
SOURCES = st.sampled_from([None, True, False, ["title"], {"includes": ["title"]}])


@given(
    QUERIES,
    st.one_of(st.none(), st.integers(0, 60)),
    st.one_of(st.none(), st.integers(1, 40)),
    SOURCES,
    st.one_of(st.none(), TEXT),
    st.booleans(),
    st.integers(1, 50),
)
def test_request_rewriting_round_trips(
    query: dict[str, Any],
    page_from: int | None,
    size: int | None,
    source: Any,
    explicit: str | None,
    other_ext: bool,
    window: int,
) -> None:
    """Undo the plan's changes and get the user's body back, less ``ext.erank``."""
    user: dict[str, Any] = {"query": query, "aggs": {"a": {"terms": {"field": "tag"}}}}
    for key, value in (("from", page_from), ("size", size), ("_source", source)):
        if value is not None:
            user[key] = value
    ext: dict[str, Any] = {"other": {"k": 1}} if other_ext else {}
    if explicit:
        ext["erank"] = {"query_text": explicit}
    original = copy.deepcopy(user)
    plan = plan_search("i", {}, {**user, **({"ext": ext} if ext else {})}, config(window))
    if other_ext:
        original["ext"] = {"other": {"k": 1}}
    if isinstance(plan, Skip):
        assert plan.body == original and plan.stripped == bool(explicit)
        assert plan.reason == "past_window" and (page_from or 0) >= window
        return
    restored = copy.deepcopy(plan.body)
    for key in ("from", "size"):
        restored.pop(key)
        if key in original:
            restored[key] = original[key]
    if plan.added_fields:
        restored["fields"] = [f for f in restored["fields"] if f not in plan.added_fields]
        if not restored["fields"]:
            del restored["fields"]
    assert restored == original
    assert plan.added_fields == (() if source in (None, True) else ("text",))
    assert plan.query_text == (explicit or query_text(original, {}))
    assert (plan.page_from, plan.page_size) == (page_from or 0, 10 if size is None else size)


@pytest.mark.parametrize(
    ("body", "params", "reason"),
    [
        ({"query": QUERY, "sort": [{"n": "asc"}]}, {}, "sort"),
        ({"query": QUERY}, {"scroll": "1m"}, "scroll"),
        ({"query": QUERY, "pit": {"id": "x"}}, {}, "pit"),
        ({"query": QUERY, "search_after": [1]}, {}, "search_after"),
        ({"query": QUERY, "rescore": {}}, {}, "rescore"),
        ({"retriever": {}}, {}, "no_query_text"),
        ({"knn": {"field": "v", "query_vector": [1.0], "k": 3}}, {}, "no_query_text"),
        ({"query": QUERY, "size": 0}, {}, "size_zero"),
        ({"suggest": {"s": {"text": "x", "term": {"field": "t"}}}}, {}, "no_query_text"),
        ({"query": {"term": {"tag": "a"}}}, {}, "no_query_text"),
        ({"query": QUERY, "from": 60}, {}, "past_window"),
    ],
)
def test_pass_through_cases(body: dict[str, Any], params: dict[str, str], reason: str) -> None:
    plan = plan_search("i", params, body, ProxyConfig())
    assert isinstance(plan, Skip) and plan.reason == reason and plan.body == body


@pytest.mark.parametrize(
    "sort", ["_score", ["_score"], {"_score": "desc"}, [{"_score": {"order": "desc"}}]]
)
def test_score_descending_sort_is_reranked(sort: Any) -> None:
    assert isinstance(
        plan_search("i", {}, {"query": QUERY, "sort": sort}, ProxyConfig()), SearchPlan
    )


def test_query_text_sources() -> None:
    query = {
        "bool": {
            "must": {"match": {"text": {"query": "alpha"}}},
            "should": [{"multi_match": {"query": "beta"}}, {"match": {"t": "alpha"}}],
            "must_not": [{"match": {"text": "never"}}],
            "filter": [{"match": {"text": "nor this"}}],
        }
    }
    assert query_text({"query": query}, {}) == "alpha beta"
    assert query_text({"query": QUERY}, {"q": "lucene"}) == "lucene quick fox"
    wrapped = {"function_score": {"query": {"query_string": {"query": "gamma"}}}}
    assert query_text({"query": wrapped}, {}) == "gamma"


def test_text_from_source_fields_or_highlight() -> None:
    hit: dict[str, Any] = {"_source": {"a": {"b": ["x", "y"]}, "c.d": "z"}}
    assert hit_text(hit, ("a.b", "c.d")) == "x\ny\nz"
    assert hit_text({"fields": {"t": ["from fields"]}}, ("t",)) == "from fields"
    assert hit_text({"highlight": {"t": ["<em>hl</em>"]}}, ("t",)) == "<em>hl</em>"
    assert hit_text({"_source": {}}, ("t",)) is None
    plan = plan_search("i", {}, {"query": QUERY, "_source": False}, ProxyConfig())
    assert isinstance(plan, SearchPlan) and plan.body["fields"] == ["text"]
    answer = {"hits": {"hits": [{"_id": "1", "_score": 1.0}, {"_id": "2", "_score": 0.5}]}}
    answer["hits"]["hits"][0]["fields"] = {"text": ["hello"]}
    request, missing = rerank_request(plan, answer)
    assert [d.text for d in request.documents] == ["hello", ""] and missing == [False, True]
    assert [d.first_stage_score for d in request.documents] == [1.0, 0.5]
    out = reranked_body(plan, answer, ranking([1, 0]), missing, TIMINGS)
    assert [h["_id"] for h in out["hits"]["hits"]] == ["2", "1"]
    assert out["hits"]["hits"][0]["fields"]["_erank"][0]["text_missing"] is True
    assert set(out["hits"]["hits"][1]["fields"]) == {"_erank"}  # the added `text` is stripped
    assert out["ext"]["erank"]["text_missing"] == 1


def test_bad_ext_erank_is_a_config_error() -> None:
    for bad in ({"window": 0}, {"bogus": 1}, "text", {"alpha": 2}):
        with pytest.raises(ConfigError, match=r"ext\.erank"):
            plan_search("i", {}, {"query": QUERY, "ext": {"erank": bad}}, ProxyConfig())


def test_config_file_patterns_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        "default: {window: 20}\n"
        "indices:\n  products: {fields: [title, body], alpha: 0.3}\n  logs-*: {enabled: false}\n"
    )
    loaded = load_config(path)
    products, logs, other = (loaded.for_target(t) for t in ("products", "logs-2024", "other"))
    assert products is not None and products.fields == ("title", "body")
    assert logs is not None and logs.enabled is False
    assert other is not None and other.window == 20
    assert loaded.for_target("products,other") is None  # mixed settings: passed through
    assert isinstance(plan_search("products,other", {}, {"query": QUERY}, loaded), Skip)
    path.write_text("default: {window: -1, colour: red}\n")
    with pytest.raises(ConfigError, match=r"default\.window.*default\.colour"):
        load_config(path)


def test_msearch_items_keep_their_places() -> None:
    lines = [
        {"index": "a"},
        {"query": QUERY, "size": 2},
        {},
        {"query": QUERY, "ext": {"erank": {"nope": 1}}},
        {"index": "b"},
        {"query": QUERY, "sort": ["n"]},
    ]
    pairs = parse_ndjson("".join(json.dumps(x) + "\n" for x in lines))
    assert pairs is not None and len(pairs) == 3
    items = plan_items(None, pairs, ProxyConfig())
    assert isinstance(items[0].plan, SearchPlan) and isinstance(items[2].plan, Skip)
    assert isinstance(items[1].plan, ConfigError)
    sent = forward_pairs(items)
    assert sent[0] == {"index": "a"} and sent[2] == {"index": "b"} and len(sent) == 4
    placed = place_responses(items, ["r0", "r2"])
    assert placed[0] == "r0" and placed[2] == "r2" and placed[1]["status"] == 400
    assert parse_ndjson(b'{"index": "a"}\n') is None


def test_routes() -> None:
    assert route("POST", "/_search") == ("search", None)
    assert route("GET", "/a%2Cb/_search?q=x") == ("search", "a,b")
    assert route("POST", "/x/_msearch") == ("msearch", "x")
    for method, path in (("PUT", "/x/_search"), ("POST", "/x/_search/template"),
                         ("POST", "/_async_search"), ("POST", "/x/_doc/1")):  # fmt: skip
        assert route(method, path) is None


def test_instruction_presets_per_index_and_per_search(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("indices:\n  scifact: {instruction_preset: beir}\n")
    config = load_config(path)
    plan = plan_search("scifact", {}, {"query": QUERY}, config)
    assert isinstance(plan, SearchPlan)
    answer = {"hits": {"hits": [{"_id": "1", "_score": 1.0, "_source": {"text": "t"}}]}}
    request, _ = rerank_request(plan, answer)
    assert (request.instruction_preset, request.instruction) == ("beir", "")
    # A per-search instruction replaces the index's preset (the server refuses both at once).
    own = plan_search(
        "scifact", {}, {"query": QUERY, "ext": {"erank": {"instruction": "x"}}}, config
    )
    assert isinstance(own, SearchPlan)
    request, _ = rerank_request(own, answer)
    assert (request.instruction_preset, request.instruction) == ("", "x")
    for bad in (
        "indices:\n  a: {instruction_preset: msmarco}\n",
        "default: {instruction: x, instruction_preset: beir}\n",
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=r"instruction_preset|not both"):
            load_config(path)
    with pytest.raises(ConfigError, match=r"ext\.erank"):
        plan_search(
            "i", {}, {"query": QUERY, "ext": {"erank": {"instruction_preset": "x"}}}, ProxyConfig()
        )


ONE_HIT = {"hits": {"hits": [{"_id": "1", "_score": 1.0, "_source": {"text": "t"}}]}}


def test_fusion_and_long_documents_per_index_and_per_search(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        "indices:\n"
        "  manuals: {fusion: rrf, rank_constant: 20, long_documents: best_passage,"
        " passage_overlap: 64}\n"
    )
    config = load_config(path)
    plan = plan_search("manuals", {}, {"query": QUERY}, config)
    assert isinstance(plan, SearchPlan)
    request, _ = rerank_request(plan, ONE_HIT)
    assert (request.fusion, request.rank_constant) == (pb.FUSION_RRF, 20)
    assert (request.long_documents, request.passage_overlap) == (
        pb.LONG_DOCUMENTS_BEST_PASSAGE,
        64,
    )
    # Per search: another method replaces the index's, and drops its RRF constant.
    ext = {"fusion": "minmax", "long_documents": "truncate"}
    own = plan_search("manuals", {}, {"query": QUERY, "ext": {"erank": ext}}, config)
    assert isinstance(own, SearchPlan)
    request, _ = rerank_request(own, ONE_HIT)
    assert request.fusion == pb.FUSION_MINMAX and not request.HasField("rank_constant")
    assert request.long_documents == pb.LONG_DOCUMENTS_TRUNCATE
    assert not request.HasField("passage_overlap")
    # Nothing configured: the server's defaults (fields unset).
    plain = plan_search("other", {}, {"query": QUERY}, config)
    assert isinstance(plain, SearchPlan)
    request, _ = rerank_request(plain, ONE_HIT)
    assert (request.fusion, request.long_documents) == (0, 0)
    assert not request.HasField("rank_constant") and not request.HasField("passage_overlap")


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("default: {fusion: borda}\n", r"default\.fusion.*'zscore', 'minmax' or 'rrf'"),
        ("default: {rank_constant: 5}\n", "rank_constant only applies to fusion: rrf"),
        ("default: {fusion: rrf, rank_constant: 0}\n", r"default\.rank_constant.*1"),
        ("default: {long_documents: pages}\n", r"default\.long_documents"),
        ("default: {passage_overlap: 8}\n", "passage_overlap only applies to long_documents"),
        ("default: {explain: maybe}\n", r"default\.explain"),
    ],
)
def test_bad_fusion_keys_in_the_file(tmp_path: Path, yaml_text: str, words: str) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=words):
        load_config(path)


@pytest.mark.parametrize(
    ("ext", "words"),
    [
        ({"fusion": "borda"}, r"ext\.erank\.fusion"),
        ({"rank_constant": 5}, r"\[ext\.erank\] rank_constant only applies to fusion: rrf"),
        ({"passage_overlap": 5}, r"\[ext\.erank\] passage_overlap only applies"),
        ({"long_documents": "all"}, r"ext\.erank\.long_documents"),
        ({"explain": "yes please"}, r"ext\.erank\.explain"),
    ],
)
def test_bad_fusion_keys_per_search(ext: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        plan_search("i", {}, {"query": QUERY, "ext": {"erank": ext}}, ProxyConfig())


@pytest.mark.parametrize(
    ("body", "params"),
    [
        ({"query": QUERY, "explain": True}, {}),
        ({"query": QUERY}, {"explain": "true"}),
        ({"query": QUERY, "ext": {"erank": {"explain": True}}}, {}),
    ],
    ids=["body", "url", "ext"],
)
def test_explain_reranks_and_asks_for_reasoning(
    body: dict[str, Any], params: dict[str, str]
) -> None:
    plan = plan_search("i", params, body, ProxyConfig())
    assert isinstance(plan, SearchPlan) and plan.config.explain
    assert plan.body.get("explain") == body.get("explain")  # the engine still explains BM25
    request, _ = rerank_request(plan, ONE_HIT)
    assert request.return_reasoning


def test_reasoning_goes_on_hits_only_when_asked() -> None:
    hits = bm25_hits(3)
    for explain in (True, False):
        body = {"query": QUERY, "explain": explain}
        plan = plan_search("i", {}, body, config(3))
        assert isinstance(plan, SearchPlan)
        answer = ranking([2, 0, 1])
        answer.fusion = pb.FUSION_RRF
        for r in answer.results:
            if explain:
                r.reasoning = f"<think>why {r.id}</think>"
        out = reranked_body(plan, engine_answer(plan, hits), answer, [False] * 3, TIMINGS)
        for hit in out["hits"]["hits"]:
            info = hit["fields"]["_erank"][0]
            position = int(hit["_id"][1:])
            if explain:
                assert info["reasoning"] == f"<think>why {position}</think>"
            else:
                assert "reasoning" not in info
        assert out["ext"]["erank"]["fusion"] == "rrf"
    assert isinstance(plan, SearchPlan)
    unfused = reranked_body(plan, engine_answer(plan, hits), ranking([0, 1, 2], False),
                            [False] * 3, TIMINGS)  # fmt: skip
    assert "fusion" not in unfused["ext"]["erank"]


def test_best_passage_goes_on_hits() -> None:
    plan = plan_search("i", {}, {"query": QUERY}, config(2))
    assert isinstance(plan, SearchPlan)
    answer = ranking([1, 0])
    answer.results[0].passage.CopyFrom(pb.Passage(index=2, start_char=10, end_char=20, count=3))
    out = reranked_body(plan, engine_answer(plan, bm25_hits(2)), answer, [False] * 2, TIMINGS)
    first, second = (h["fields"]["_erank"][0] for h in out["hits"]["hits"])
    assert first["passage"] == {"index": 2, "start_char": 10, "end_char": 20, "count": 3}
    assert "passage" not in second
