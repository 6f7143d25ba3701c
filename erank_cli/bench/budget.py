"""``erank bench budget``: deadline-aware ("anytime") scoring against its budget.

One window of ``docs`` documents per request, on a scripted checkpoint that reasons for
``think_tokens`` tokens before it answers (erank/checkpoints.py), so the reasoning a deadline cuts
is long and of known length. First the full-length time: requests without a deadline, the median
of ``full_rounds``. Then budgets of ``budgets`` % of it (``budget_ms``, ``DEADLINE_POLICY_CUT``),
``requests`` of each, the budgets interleaved round by round so a noisy neighbour hits all alike:
p50 and p99 latency (at the client) against the budget, documents full / cut / unscored, mean
thinking tokens of the answered documents, and how long before the deadline the server began
closing (``closing_margin_ms``). The goal: p99 ≤ budget × 1.10 with every document scored, at
every budget ≥ 25 %.

Every measured request has new documents (erank_cli/bench/load.py ``Corpus``), so the score
cache answers only where that is what is measured: the background step (a cut request with
``finish_in_background``, then, once the server has finished its cut documents, the identical
request again: how many come back full from the cache, and how fast) and the cache lookups (a
50-document request answered wholly from the cache, in process and, with ``score_cache_url``, in
a shared Valkey through a second server on the same engine whose own cache is off).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from erank.settings import ServerSettings
from erank_cli.bench.harness import (
    SCRIPT_OVERHEAD_TOKENS,
    connected,
    environment,
    finished,
    open_channel,
    scripted_model,
)
from erank_cli.bench.load import Corpus, percentile
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.v1 import reranker_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from erank.scorer import Scorer
    from erank.server import ScoringServer

GOAL_SLACK = 0.10  # p99 ≤ budget × (1 + GOAL_SLACK), every document scored
FULL, CUT, UNSCORED = pb.COMPLETION_FULL, pb.COMPLETION_CUT, pb.COMPLETION_UNSCORED


@dataclass(frozen=True)
class BudgetBench:
    """What to measure; see ``erank bench budget --help`` for each field."""

    docs: int = 50
    doc_tokens: int = 80
    think_tokens: int = 400
    budgets: tuple[int, ...] = (25, 50, 75, 100, 150)  # % of the full-length time
    requests: int = 10  # measured requests per budget
    full_rounds: int = 5  # requests without a deadline; their median is the full-length time
    background_percent: int = 50  # the budget of the background-completion step
    lookups: int = 20  # all-hit requests per cache
    score_cache_url: str | None = None  # a shared cache (Valkey) to measure beside in-process
    enforce_eager: bool = False
    dtype: str = "float32"


def settings_for(bench: BudgetBench, **fields: Any) -> ServerSettings:
    """Server settings: port 0, the scripted model, the score cache on; ``fields`` override."""
    base: dict[str, Any] = dict(
        model=scripted_model(bench.think_tokens),
        port=0,
        dtype=bench.dtype,
        enforce_eager=bench.enforce_eager,
        max_new_tokens=bench.think_tokens + SCRIPT_OVERHEAD_TOKENS + 16,
        max_documents=max(1000, bench.docs),
    )
    return ServerSettings(**{**base, **fields})


@dataclass(frozen=True)
class Answer:
    """One call: milliseconds at the client, and the response."""

    ms: float
    response: pb.RerankResponse  # empty when the call failed
    error: str = ""  # the failed call's gRPC status (e.g. DEADLINE_EXCEEDED: the backstop)

    def count(self, completion: int) -> int:
        return sum(r.completion == completion for r in self.response.results)


class Caller:
    """Unary ``Rerank`` calls on one channel, with new requests of one shape from ``corpus``."""

    def __init__(self, channel: grpc.aio.Channel, corpus: Corpus, docs: int) -> None:
        self.stub = pb_grpc.RerankerStub(channel)
        self.corpus, self.docs = corpus, docs

    def new(self, budget_ms: int = 0, background: bool = False) -> pb.RerankRequest:
        (request,) = self.corpus.requests(1, self.docs)
        request.budget_ms = budget_ms
        request.deadline_policy = pb.DEADLINE_POLICY_CUT
        request.finish_in_background = background
        return request

    async def call(self, request: pb.RerankRequest) -> Answer:
        began = time.perf_counter()
        response = await self.stub.Rerank(request, timeout=600)
        return Answer(1000 * (time.perf_counter() - began), response)

    async def try_call(self, request: pb.RerankRequest) -> Answer:
        """A measured call that may fail: a budgeted call the server could not answer in time
        (its backstop: DEADLINE_EXCEEDED) is a result of the bench, not the end of it."""
        began = time.perf_counter()
        try:
            return await self.call(request)
        except grpc.aio.AioRpcError as err:
            ms = 1000 * (time.perf_counter() - began)
            return Answer(ms, pb.RerankResponse(), err.code().name)


async def run(bench: BudgetBench) -> dict[str, Any]:
    """Start a server on the scripted model, measure, stop it; the results as JSON."""
    env = environment()
    async with connected(lambda: settings_for(bench)) as (server, channel):
        assert server is not None
        caller = Caller(channel, Corpus(server.backend.tokenizer, bench.doc_tokens), bench.docs)
        await caller.call(caller.new())  # warm-up: compilation, the prefix cache's head
        full = await measure_full(bench, caller)
        await caller.call(caller.new(budget_ms=max(1, int(full["median_ms"] / 2))))
        rows = await measure_budgets(bench, caller, full["median_ms"])
        background = await measure_background(bench, caller, full["median_ms"])
        lookups = {"in_process": await measure_lookups(bench, caller, server)}
        if bench.score_cache_url:
            lookups["shared"] = await _shared_lookups(bench, server, caller.corpus)
        s = server.settings
        settings = {"model": s.model, "max_new_tokens": s.max_new_tokens}
    return {
        **finished(env),
        "bench": asdict(bench) | {"score_cache_url": bool(bench.score_cache_url)},
        "server": settings,
        "full": full,
        "budgets": rows,
        "background": background,
        "cache_lookup": lookups,
    }


async def measure_full(bench: BudgetBench, caller: Caller) -> dict[str, Any]:
    """Requests without a deadline: every document reasons to its end."""
    answers = [await caller.call(caller.new()) for _ in range(bench.full_rounds)]
    return {
        "rounds_ms": [a.ms for a in answers],
        "median_ms": statistics.median(a.ms for a in answers),
        "mean_thinking_tokens": _mean_thinking(answers),
        "generated_tokens_per_doc": statistics.mean(
            a.response.usage.generated_tokens / bench.docs for a in answers
        ),
        "full": sum(a.count(FULL) for a in answers),
        "documents": bench.docs * len(answers),
    }


async def measure_budgets(
    bench: BudgetBench, caller: Caller, full_ms: float
) -> list[dict[str, Any]]:
    """``bench.requests`` new requests per budget, the budgets' order reversed every round."""
    budget_ms = {p: max(1, round(full_ms * p / 100)) for p in bench.budgets}
    answers: dict[int, list[Answer]] = {p: [] for p in bench.budgets}
    for r in range(bench.requests):
        order = bench.budgets if r % 2 == 0 else bench.budgets[::-1]
        for p in order:
            answers[p].append(await caller.try_call(caller.new(budget_ms[p])))
    return [_row(p, budget_ms[p], answers[p], bench.docs) for p in bench.budgets]


def _row(percent: int, budget_ms: int, answers: list[Answer], docs: int) -> dict[str, Any]:
    """One budget: latency against it, completions, thinking, closing margin, the goal."""
    latencies = sorted(a.ms for a in answers)
    documents = docs * len(answers)
    counts = {name: sum(a.count(c) for a in answers) for name, c in _COMPLETIONS.items()}
    margins = [a.response.completions.closing_margin_ms for a in answers if a.count(CUT)]
    p99 = percentile(latencies, 99)
    failed = [a.error for a in answers if a.error]
    return {
        "percent": percent,
        "budget_ms": budget_ms,
        "requests": len(answers),
        "documents": documents,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": p99,
        "p99_over_budget": p99 / budget_ms,
        **counts,
        **{f"{name}_pct": 100 * n / documents for name, n in counts.items()},
        "mean_thinking_tokens": _mean_thinking(answers),
        "closing_margin_ms": statistics.median(margins) if margins else 0.0,
        "deadline_ms": statistics.median(a.response.completions.deadline_ms for a in answers),
        "failed": len(failed),
        "failed_statuses": sorted(set(failed)),
        "goal_met": p99 <= budget_ms * (1 + GOAL_SLACK) and counts["unscored"] == 0 and not failed,
        "latencies_ms": [a.ms for a in answers],
        "unscored_per_request": [a.count(UNSCORED) for a in answers],
    }


_COMPLETIONS = {"full": FULL, "cut": CUT, "unscored": UNSCORED}


def _mean_thinking(answers: list[Answer]) -> float:
    """Mean thinking tokens of the documents that got an answer (full or cut)."""
    tokens = [
        r.thinking_tokens
        for a in answers
        for r in a.response.results
        if r.completion in (FULL, CUT)
    ]
    return statistics.mean(tokens) if tokens else 0.0


async def measure_background(bench: BudgetBench, caller: Caller, full_ms: float) -> dict[str, Any]:
    """A cut request with ``finish_in_background``; once the server has finished its cut
    documents, the identical request again."""
    budget_ms = max(1, round(full_ms * bench.background_percent / 100))
    request = caller.new(budget_ms, background=True)
    before = _background_finished()
    first = await caller.call(request)
    waited_s = await _background_done(before, first.count(CUT), timeout_s=20 * full_ms / 1000)
    second = await caller.call(request)
    return {
        "percent": bench.background_percent,
        "budget_ms": budget_ms,
        "documents": bench.docs,
        "first": _summary(first),
        "waited_s": waited_s,
        "second": _summary(second)
        | {
            "full_from_cache": sum(
                r.cached and r.completion == FULL for r in second.response.results
            )
        },
    }


def _summary(answer: Answer) -> dict[str, Any]:
    return {
        "ms": answer.ms,
        **{name: answer.count(c) for name, c in _COMPLETIONS.items()},
        "cache_hits": answer.response.usage.cache_hits,
    }


def _background_finished() -> float:
    """Cut documents the in-process server has finished, dropped or failed in the background
    (``erank_background_documents_finished``; no sample before the first)."""
    from prometheus_client import REGISTRY

    name = "erank_background_documents_finished_total"
    return sum(REGISTRY.get_sample_value(name, {"outcome": o}) or 0.0 for o in _OUTCOMES)


_OUTCOMES = ("finished", "dropped", "failed")


async def _background_done(before: float, cut: int, timeout_s: float) -> float:
    """Seconds until ``cut`` more background documents are done (``timeout_s`` at most)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if _background_finished() - before >= cut:
            break
        await asyncio.sleep(0.02)
    return time.perf_counter() - began


async def measure_lookups(
    bench: BudgetBench, caller: Caller, server: ScoringServer
) -> dict[str, Any]:
    """A request scored once, then asked ``bench.lookups`` times: answered from the cache. And
    the lookup alone: the request's keys looked up in the server's cache, as its scorer does
    (one ``get`` per key in process, one ``MGET`` in a shared cache).

    Asked again first until every document is a hit (a shared cache's writes are asynchronous).
    """
    request = caller.new()
    await caller.call(request)
    for _ in range(20):
        if (await caller.call(request)).response.usage.cache_hits == bench.docs:
            break
        await asyncio.sleep(0.1)
    answers = [await caller.call(request) for _ in range(bench.lookups)]
    latencies = sorted(a.ms for a in answers)
    scorer = server.service.scorer
    assert scorer is not None  # a running server has its scorer
    keys = (await scorer.prepare(request)).keys
    lookups = sorted([await _lookup_ms(scorer, keys) for _ in range(bench.lookups)])
    return {
        "documents": bench.docs,
        "requests": len(answers),
        "request_p50_ms": percentile(latencies, 50),
        "request_p99_ms": percentile(latencies, 99),
        "lookup_p50_ms": percentile(lookups, 50),
        "lookup_p99_ms": percentile(lookups, 99),
        "min_cache_hits": min(a.response.usage.cache_hits for a in answers),
    }


async def _lookup_ms(scorer: Scorer, keys: list[bytes]) -> float:
    """One lookup of ``keys``: in the shared cache where the server has one, else in process."""
    began = time.perf_counter()
    if scorer.shared is not None:
        found = await scorer.shared.get_many(keys, False)
    else:
        found = [scorer.cache.get(key) for key in keys]
    ms = 1000 * (time.perf_counter() - began)
    if any(entry is None for entry in found):
        raise RuntimeError("a cache lookup missed a key the server had just answered from it")
    return ms


async def _shared_lookups(
    bench: BudgetBench, server: ScoringServer, corpus: Corpus
) -> dict[str, Any]:
    """The same on a second server on this engine, its in-process cache off and the shared
    cache at ``bench.score_cache_url``."""
    from erank.server import running_server

    settings = settings_for(bench, score_cache_entries=0, score_cache_url=bench.score_cache_url)
    async with (
        running_server(settings, server.backend) as shared,
        open_channel(f"127.0.0.1:{shared.port}") as channel,
    ):
        return await measure_lookups(bench, Caller(channel, corpus, bench.docs), shared)


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """JSON and PNG under ``out`` (a folder); returns their paths."""
    import json

    from erank_cli.bench.report import plot_budget

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "budget.json", out / "budget.png"
    json_path.write_text(json.dumps(result, indent=2))
    plot_budget(result, png_path)
    return json_path, png_path
