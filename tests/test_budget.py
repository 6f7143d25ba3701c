"""The scoring call's budget and its markers, without an engine or a scoring server.

What a connector tells the scoring server (connector/budget.py: the remaining budget less the
measured overhead, DEADLINE_POLICY_CUT or FAIL), how the overhead estimate moves, how
``on_budget`` and ``finish_in_background`` are parsed per index, per search and per REST call
(hypothesis tries any value), and how cut and unscored answers read on hits, in ``ext.erank``
and in ``X-Erank-Completions``. The answers are ``erank.v1`` messages as a server that cut
sends them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.budget import (
    FALL,
    INITIAL_ASSEMBLY_MS,
    INITIAL_TRANSPORT_MS,
    RISE,
    OnBudget,
    Overhead,
)
from connector.rest.cohere import RerankBody, RerankBodyV2, rerank_json
from connector.rest.tei import TeiBody
from connector.results import completions_json
from connector.rewrite.config import (
    ConfigError,
    IndexConfig,
    ProxyConfig,
    parse_config,
    parse_overrides,
)
from connector.rewrite.failopen import COMPLETIONS_HEADER, FailOpenStats, Scoring, start
from connector.rewrite.hits import Timings, reranked_body
from connector.rewrite.search import SearchPlan, plan_search
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import UINT32_MAX

QUERY = {"match": {"text": "quick fox"}}
ON_BUDGET = st.one_of(st.sampled_from(["cut", "fail_open"]), st.text(max_size=12))


def cut_answer(count: int, cut: set[int], unscored: set[int], cached: int = 0) -> pb.RerankResponse:
    """What a server that cut sends for ``count`` documents (best first in input order)."""
    results = []
    for i in range(count):
        completion = (
            pb.COMPLETION_UNSCORED
            if i in unscored
            else pb.COMPLETION_CUT
            if i in cut
            else pb.COMPLETION_FULL
        )
        results.append(
            pb.RerankResult(
                id=str(i),
                index=i,
                rank_score=float(count - i),
                hybrid_score=float(count - i) / 10,
                status=pb.RESULT_STATUS_UNSCORED if i in unscored else pb.RESULT_STATUS_OK,
                completion=completion,
                thinking_tokens=0 if i in unscored else 40 + i,
            )
        )
    completions = pb.Completions(
        full=count - len(cut) - len(unscored),
        cut=len(cut),
        unscored=len(unscored),
        deadline_ms=480,
        closing_margin_ms=35.5,
    )
    return pb.RerankResponse(
        results=results,
        model="m",
        ordered_by=pb.ORDERING_HYBRID_SCORE,
        completions=completions,
        usage=pb.Usage(cache_hits=cached, cache_misses=count - cached),
    )


def engine_answer(count: int) -> dict[str, Any]:
    hits = [
        {"_index": "i", "_id": f"h{i}", "_score": 100.0 - i, "_source": {"text": f"t{i}"}}
        for i in range(count)
    ]
    return {"took": 1, "hits": {"total": {"value": count}, "max_score": 100.0, "hits": hits}}


def plan_for(config: IndexConfig, ext: dict[str, Any] | None = None) -> SearchPlan:
    body: dict[str, Any] = {"query": QUERY, "size": 10}
    if ext is not None:
        body["ext"] = {"erank": ext}
    plan = plan_search("i", {}, body, ProxyConfig(default=config))
    assert isinstance(plan, SearchPlan)
    return plan


# --- the budget arithmetic ---------------------------------------------------------------


def test_fail_open_keeps_the_all_or_nothing_call() -> None:
    deadline = Overhead().deadline(2500, spent_ms=40.0, on_budget="fail_open")
    assert deadline.timeout_s == 2.5  # the whole budget, as before cut answers existed
    assert deadline.budget_ms == 0 and deadline.policy == pb.DEADLINE_POLICY_FAIL
    assert not deadline.finish_in_background


def test_cut_sends_the_remaining_budget_less_the_overhead() -> None:
    overhead = Overhead()
    deadline = overhead.deadline(1000, spent_ms=10.0, finish_in_background=True)
    assert deadline.timeout_s == pytest.approx(0.99)  # the gRPC deadline: what remains
    initial = INITIAL_TRANSPORT_MS + INITIAL_ASSEMBLY_MS
    assert deadline.budget_ms == math.floor(990 - initial)
    assert deadline.policy == pb.DEADLINE_POLICY_CUT and deadline.finish_in_background
    request = deadline.apply(pb.RerankRequest(query="q"))
    assert (request.budget_ms, request.deadline_policy, request.finish_in_background) == (
        deadline.budget_ms,
        pb.DEADLINE_POLICY_CUT,
        True,
    )
    assert overhead.deadline(2, spent_ms=50.0).budget_ms == 1  # spent: at least 1 ms each
    assert overhead.deadline(2, spent_ms=50.0).timeout_s == 0.001
    assert overhead.deadline(10**13).budget_ms == UINT32_MAX  # a uint32 on the wire


@given(
    st.integers(1, 300_000),
    st.floats(0, 400_000),
    st.floats(0, 10_000),
    st.floats(0, 10_000),
)
def test_the_server_budget_fits_inside_the_deadline(
    budget_ms: int, spent_ms: float, transport_ms: float, assembly_ms: float
) -> None:
    overhead = Overhead()
    overhead.transport_ms, overhead.assembly_ms = transport_ms, assembly_ms
    deadline = overhead.deadline(budget_ms, spent_ms)
    remaining = max(1.0, budget_ms - spent_ms)
    assert deadline.timeout_s == pytest.approx(remaining / 1000)
    assert 1 <= deadline.budget_ms <= max(1, math.floor(remaining))
    if remaining - transport_ms - assembly_ms >= 1:
        assert deadline.budget_ms + transport_ms + assembly_ms <= remaining + 1e-6


def test_the_round_trip_is_learnt_from_answers_that_worked_to_their_deadline() -> None:
    overhead = Overhead()
    start_ms = overhead.transport_ms
    overhead.called(500.0, cut_answer(4, cut={2}, unscored=set()))  # deadline 480: 20 ms late
    rose = start_ms + RISE * (20.0 - start_ms)
    assert overhead.transport_ms == pytest.approx(rose)
    full = cut_answer(4, cut=set(), unscored=set())
    overhead.called(300.0, full)  # a full answer says nothing about a round trip of ~11 ms
    assert overhead.transport_ms == pytest.approx(rose)
    overhead.called(3.0, full)  # but a whole call of 3 ms bounds it
    assert overhead.transport_ms == pytest.approx(rose + FALL * (3.0 - rose))
    overhead.assembled(9.0)
    assert overhead.assembly_ms == pytest.approx(INITIAL_ASSEMBLY_MS + RISE * 8.0)
    assert overhead.as_json() == {
        "transport_ms": round(overhead.transport_ms, 3),
        "assembly_ms": round(overhead.assembly_ms, 3),
        "calls": 3,
        "to_deadline": 1,
    }


def test_the_scoring_step_sends_its_index_settings() -> None:
    stats = FailOpenStats()
    cases: list[tuple[OnBudget, bool]] = [("cut", True), ("cut", False), ("fail_open", False)]
    for on_budget, background in cases:
        config = IndexConfig(
            budget_ms=800, on_budget=on_budget, finish_in_background=background, window=5
        )
        step = start(plan_for(config), engine_answer(5), stats, 1.0)
        assert isinstance(step, Scoring)
        call = step.call()
        assert call.request.finish_in_background is background
        if on_budget == "fail_open":
            assert call.timeout_s == 0.8 and call.request.budget_ms == 0
            assert call.request.deadline_policy == pb.DEADLINE_POLICY_FAIL
        else:
            assert 0.79 < call.timeout_s <= 0.8
            assert call.request.budget_ms < call.timeout_s * 1000
            assert call.request.deadline_policy == pb.DEADLINE_POLICY_CUT


# --- parsing: per index, per search, per REST call ------------------------------------------


NOT_BOOLEANS = ["maybe", 2, [True], {"on": 1}]


@given(ON_BUDGET, st.one_of(st.booleans(), st.none(), st.sampled_from(NOT_BOOLEANS)))
def test_index_config_takes_on_budget_and_finish_in_background(
    on_budget: str, background: object
) -> None:
    entry: dict[str, Any] = {"on_budget": on_budget}
    if background is not None:
        entry["finish_in_background"] = background
    valid_policy = on_budget in ("cut", "fail_open")
    valid_flag = background is None or isinstance(background, bool)
    try:
        config = parse_config({"default": entry}).default
    except ConfigError as err:
        if not valid_policy:
            assert "[default.on_budget]" in str(err)
        if not valid_flag:
            assert "[default.finish_in_background]" in str(err)
        if valid_policy and valid_flag:
            assert on_budget == "fail_open" and background is True
            assert "finish_in_background only applies to on_budget: cut" in str(err)
        return
    assert valid_policy and valid_flag
    assert config.on_budget == on_budget
    assert config.finish_in_background is (background is True)


def test_defaults_are_cut_without_background() -> None:
    config = IndexConfig()
    assert (config.on_budget, config.finish_in_background) == ("cut", False)


@given(ON_BUDGET, st.one_of(st.booleans(), st.none()))
def test_ext_erank_takes_them_and_names_the_key(on_budget: str, background: bool | None) -> None:
    ext: dict[str, Any] = {"on_budget": on_budget}
    if background is not None:
        ext["finish_in_background"] = background
    try:
        overrides = parse_overrides(ext)
    except ConfigError as err:
        if on_budget not in ("cut", "fail_open"):
            assert "[ext.erank.on_budget]" in str(err)
        else:
            assert on_budget == "fail_open" and background is True
            assert "finish_in_background only applies to on_budget: cut" in str(err)
        return
    merged = overrides.apply(IndexConfig(finish_in_background=True))
    assert merged.on_budget == on_budget
    # a per-search fail_open drops the index's finish_in_background; cut keeps it
    expected = background if background is not None else on_budget == "cut"
    assert merged.finish_in_background is expected


def test_a_search_cannot_finish_in_the_background_of_a_fail_open_index() -> None:
    config = ProxyConfig(default=IndexConfig(on_budget="fail_open"))
    body = {"query": QUERY, "ext": {"erank": {"finish_in_background": True}}}
    with pytest.raises(ConfigError, match=r"\[ext\.erank\] finish_in_background only applies"):
        plan_search("i", {}, body, config)
    body = {"query": QUERY, "ext": {"erank": {"on_budget": "cut", "finish_in_background": True}}}
    plan = plan_search("i", {}, body, config)
    assert isinstance(plan, SearchPlan) and plan.config.finish_in_background


@given(
    st.sampled_from([RerankBody, RerankBodyV2, TeiBody]),
    st.one_of(st.integers(), st.integers(-1, 2), st.integers(299_999, 300_001)),
)
def test_rest_budget_ms_is_range_checked(model: type[RerankBody | TeiBody], value: int) -> None:
    documents = {"texts": ["a"]} if model is TeiBody else {"documents": ["a"]}
    raw = json.dumps({"query": "q", **documents, "budget_ms": value})
    try:
        body = model.model_validate_json(raw)
    except ValidationError as err:
        assert [e["loc"] for e in err.errors()] == [("budget_ms",)]
        assert not 1 <= value <= 300_000
        return
    assert 1 <= value <= 300_000 and body.budget_ms == value


@given(ON_BUDGET, st.booleans())
def test_rest_on_budget_and_finish_in_background(on_budget: str, background: bool) -> None:
    raw: dict[str, Any] = {"query": "q", "documents": ["a"], "on_budget": on_budget}
    raw["finish_in_background"] = background
    try:
        body = RerankBody.model_validate_json(json.dumps(raw))
    except ValidationError as err:
        (error,) = err.errors()
        if on_budget not in ("cut", "fail_open"):
            assert error["loc"] == ("on_budget",)
        else:
            assert error["loc"] == ("finish_in_background",) and on_budget == "fail_open"
            assert error["msg"] == "finish_in_background only applies to on_budget: cut"
        return
    assert (body.on_budget, body.finish_in_background) == (on_budget, background)
    assert RerankBody.model_validate_json('{"query": "q", "documents": []}').on_budget == "cut"


# --- markers ----------------------------------------------------------------------------------


def test_cut_and_unscored_hits_are_marked_and_counted() -> None:
    plan = plan_for(IndexConfig(window=6))
    answer = cut_answer(6, cut={1, 4}, unscored={5}, cached=2)
    out = reranked_body(plan, engine_answer(6), answer, [False] * 6, Timings(1.0, 2.0))
    status = out["ext"]["erank"]
    assert status["status"] == "reranked"  # cut answers are a rerank, not a failure
    assert status["completions"] == {
        "full": 3,
        "cut": 2,
        "unscored": 1,
        "cached": 2,
        "deadline_ms": 480,
        "closing_margin_ms": 35.5,
    }
    marks = {h["_id"]: h["fields"]["_erank"][0] for h in out["hits"]["hits"]}
    assert marks["h1"]["completion"] == marks["h4"]["completion"] == "cut"
    assert marks["h5"]["completion"] == "unscored" and marks["h5"]["status"] == "unscored"
    assert marks["h5"]["thinking_tokens"] == 0 and marks["h1"]["thinking_tokens"] == 41
    assert {marks[h]["completion"] for h in ("h0", "h2", "h3")} == {"full"}


def test_an_answer_without_counts_is_counted_from_its_results() -> None:
    """A server older than cutting sends no completions: all its answers were full."""
    answer = cut_answer(3, cut=set(), unscored=set())
    answer.ClearField("completions")
    for result in answer.results:
        result.completion = pb.COMPLETION_UNSPECIFIED
    counts = completions_json(answer)
    assert counts == {
        "full": 3,
        "cut": 0,
        "unscored": 0,
        "cached": 0,
        "deadline_ms": 0,
        "closing_margin_ms": 0.0,
    }
    assert {r["completion"] for r in rerank_json(answer)["results"]} == {"full"}


def test_the_proxy_header_and_the_rest_json_say_the_same() -> None:
    stats = FailOpenStats()
    step = start(plan_for(IndexConfig(window=4)), engine_answer(4), stats, 1.0)
    assert isinstance(step, Scoring)
    answer = cut_answer(4, cut={0, 3}, unscored=set(), cached=1)
    done = step.succeeded(answer, step.call())
    assert done.outcome == "reranked" and stats.outcomes == {"reranked": 1}
    headers = done.headers(first_stage_ms=3.0)
    assert headers["X-Erank-Status"] == "reranked"
    assert headers[COMPLETIONS_HEADER] == "full=2;cut=2;unscored=0;cached=1"
    rest = rerank_json(answer)
    assert rest["completions"] == done.body["ext"]["erank"]["completions"]
    assert [(r["completion"], r["thinking_tokens"]) for r in rest["results"]] == [
        ("cut", 40),
        ("full", 41),
        ("full", 42),
        ("cut", 43),
    ]
    assert stats.overhead.calls == 1 and stats.as_json()["overhead"]["to_deadline"] == 1


def test_the_documented_budget_config_loads() -> None:
    """docs/PROXY.md's budget example is a valid config; with ``fail_open`` it is an error
    naming the key, as the comment says."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "PROXY.md").read_text()
    section = doc.split("## The budget: cut answers instead of failing open", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(block)).default
    assert (config.budget_ms, config.on_budget, config.finish_in_background) == (500, "cut", True)
    with pytest.raises(ConfigError, match="finish_in_background only applies to on_budget: cut"):
        parse_config(yaml.safe_load(block.replace("on_budget: cut", "on_budget: fail_open")))
