"""The scoring call of one planned search, and what happens when it cannot be made: fail open.

A scoring server that is down, slower than the index's ``budget_ms``, or answering with an
error or with a malformed ranking never costs the user their search: they get the engine's own
BM25 page (the hits and scores a direct search returns), marked ``ext.erank.status = "failed"``
and ``X-Erank-Status: failed-open``. Each failure is counted by type and logged at most once
per ``log_interval_s`` with the number of failures since the last warning, so a scoring-server
outage does not flood the log with one line per search.

With ``on_budget: cut`` (the default; :mod:`connector.budget`) a model slower than the budget is
no failure: the server is told the budget less the connector's measured overhead and cuts the
reasoning still running shortly before its deadline, so the search is answered reranked within
its budget, its hits marked ``completion: cut`` and counted in ``ext.erank.completions`` (and
``X-Erank-Completions``). Only a server that cannot answer at all fails open. With ``on_budget:
fail_open`` the call is all or nothing, as before.

A circuit breaker per scoring server (:mod:`connector.rewrite.breaker`, one per ``FailOpenStats``)
stops calling a server after ``scoring_server.breaker.failures`` calls in a row failed with it in
trouble: searches then fail open at once (``error.type: circuit_open``) until a trial call after
the cool-down succeeds. Failed-open answers carry its state in ``ext.erank.breaker``.

Used by the proxy (asyncio) and by the client wrappers (asyncio and blocking): one code path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import grpc

from connector.budget import Overhead
from connector.results import COMPLETIONS
from connector.rewrite.breaker import CIRCUIT_OPEN, Breaker, BreakerConfig
from connector.rewrite.hits import (
    MalformedResponse,
    Timings,
    failed_open_body,
    hits_of,
    rerank_request,
    reranked_body,
)
from connector.rewrite.search import SearchPlan
from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import scoring_error

log = logging.getLogger("erank.proxy")

Outcome: TypeAlias = Literal["reranked", "failed-open", "skipped"]
STATUS_HEADER = "X-Erank-Status"
COMPLETIONS_HEADER = "X-Erank-Completions"


def classify_error(exc: BaseException) -> tuple[str, str]:
    """``(type, reason)`` of a failed scoring call, for ``ext.erank.error`` and the counters."""
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        kind = scoring_error(code if isinstance(code, grpc.StatusCode) else None)[1]
        name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
        return kind, f"{name}: {details}"
    if isinstance(exc, MalformedResponse):
        return "malformed_response", str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", "scoring call exceeded its budget"
    return "internal_error", f"{type(exc).__name__}: {exc}"


class FailOpenStats:
    """Counters of what the proxy did with searches, the rate-limited failure log, the scoring
    server's circuit breaker and the measured overhead of a scoring call (one per server: the
    proxy and each wrapper have one)."""

    def __init__(self, log_interval_s: float = 10.0, breaker: BreakerConfig | None = None) -> None:
        self.log_interval_s = log_interval_s
        self.breaker = Breaker(breaker or BreakerConfig())
        self.overhead = Overhead()
        self.outcomes: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last_warning = float("-inf")
        self._unlogged = 0

    def count(self, outcome: Outcome, reason: str | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if outcome == "skipped" and reason:
                self.skipped[reason] += 1

    def failed(self, error_type: str, reason: str) -> None:
        """Count a fail-open; warn if the last warning is older than the interval."""
        with self._lock:
            self.outcomes["failed-open"] += 1
            self.failures[error_type] += 1
            self._unlogged += 1
            now = time.monotonic()
            if now - self._last_warning < self.log_interval_s:
                return
            self._last_warning, count, self._unlogged = now, self._unlogged, 0
        log.warning(
            "reranking failed open %d time(s) in the last %.0f s; latest: %s: %s",
            count,
            self.log_interval_s,
            error_type,
            reason,
        )

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "outcomes": dict(self.outcomes),
                "skipped": dict(self.skipped),
                "failed_open": dict(self.failures),
                "breaker": self.breaker.as_json(),
                "overhead": self.overhead.as_json(),
            }


def completions_header(completions: Mapping[str, Any]) -> str:
    """``X-Erank-Completions``: ``full=40;cut=10;unscored=0;cached=3``."""
    return ";".join(f"{k}={completions[k]}" for k in (*COMPLETIONS, "cached"))


def outcome_headers(
    outcome: Outcome, timings: Timings, completions: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The proxy's headers for an answer: ``X-Erank-Status``, ``Server-Timing`` and, for a
    reranked search, ``X-Erank-Completions``."""
    headers = {STATUS_HEADER: outcome, "Server-Timing": timings.server_timing()}
    if completions is not None:
        headers[COMPLETIONS_HEADER] = completions_header(completions)
    return headers


@dataclass(frozen=True)
class Finished:
    """A search's answer for the user, what happened, how long the scoring call took and, when
    reranked, how many hits got a full, a cut or no answer."""

    body: dict[str, Any]
    outcome: Outcome
    rerank_ms: float = 0.0
    completions: Mapping[str, Any] | None = None

    def headers(self, first_stage_ms: float) -> dict[str, str]:
        return outcome_headers(
            self.outcome, Timings(first_stage_ms, self.rerank_ms), self.completions
        )


@dataclass(frozen=True)
class Call:
    """One scoring call as sent: the request with its deadline fields, the gRPC timeout, and
    when it left (to measure the round trip)."""

    request: pb.RerankRequest
    timeout_s: float
    sent: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Scoring:
    """A planned search whose scoring call is to be made: ``request`` goes to the scoring
    server, then :meth:`succeeded` or :meth:`failed` finishes it. The I/O-free part of
    finishing, shared by the asyncio and blocking shells (:func:`score_async`,
    :func:`score_sync`) so that they differ only in how they wait for the call."""

    plan: SearchPlan
    response: Mapping[str, Any]
    request: pb.RerankRequest
    missing: list[bool]
    stats: FailOpenStats
    first_stage_ms: float
    began: float = field(default_factory=time.perf_counter)

    def call(self) -> Call:
        """The call to make now: the remaining budget as its deadline (:mod:`connector.budget`:
        with ``on_budget: cut`` the server is told it less the measured overhead)."""
        config = self.plan.config
        spent_ms = (time.perf_counter() - self.began) * 1000
        deadline = self.stats.overhead.deadline(
            config.budget_ms, spent_ms, config.on_budget, config.finish_in_background
        )
        return Call(deadline.apply(self.request), deadline.timeout_s)

    def _timings(self) -> Timings:
        return Timings(self.first_stage_ms, (time.perf_counter() - self.began) * 1000)

    def refused(self) -> Finished | None:
        """None when the scoring call may be made; else (the breaker is open) the engine's own
        page, failed open at once without a call."""
        breaker = self.stats.breaker
        if breaker.admit():
            return None
        reason = (
            f"the scoring server is not called while the circuit breaker is {breaker.state}"
            f" (after {breaker.config.failures} failed calls in a row)"
        )
        return self._failed_open(CIRCUIT_OPEN, reason)

    def succeeded(self, answer: pb.RerankResponse, call: Call | None = None) -> Finished:
        """The reranked page (cut answers too); fails open if the answer is not a ranking of
        the hits sent. With the ``call`` that was made, its round trip and the page's assembly
        are measured for the next calls' budgets."""
        self.stats.breaker.record(None)
        timings = self._timings()
        arrived = time.perf_counter()
        if call is not None:
            self.stats.overhead.called((arrived - call.sent) * 1000, answer)
        try:
            body = reranked_body(self.plan, self.response, answer, self.missing, timings)
        except Exception as exc:  # a malformed answer: fail open like a failed call
            return self.failed(exc)
        self.stats.overhead.assembled((time.perf_counter() - arrived) * 1000)
        self.stats.count("reranked")
        completions = body["ext"]["erank"]["completions"]
        return Finished(body, "reranked", timings.rerank_ms, completions)

    def failed(self, exc: BaseException) -> Finished:
        """The engine's own page, marked failed open; counted and (rate-limited) logged."""
        self.stats.breaker.record(exc)
        return self._failed_open(*classify_error(exc))

    def _failed_open(self, error_type: str, reason: str) -> Finished:
        timings = self._timings()
        self.stats.failed(error_type, reason)
        body = failed_open_body(self.plan, self.response, error_type, reason, timings)
        if self.stats.breaker.enabled:
            body["ext"]["erank"]["breaker"] = self.stats.breaker.summary()
        return Finished(body, "failed-open", timings.rerank_ms)


def start(
    plan: SearchPlan, response: Mapping[str, Any], stats: FailOpenStats, first_stage_ms: float
) -> Scoring | Finished:
    """The scoring call a search's answer needs, or the finished answer when it has no hits."""
    request, missing = rerank_request(plan, response)
    if request.documents:
        return Scoring(plan, response, request, missing, stats, first_stage_ms)
    stats.count("skipped", "no_hits")
    body = failed_open_body(plan, response, "", "", Timings(first_stage_ms))
    body["ext"]["erank"] = {"status": "skipped", "reason": "no_hits", "window": plan.window}
    return Finished(body, "skipped")


async def score_async(step: Scoring, client: AsyncRerankerClient) -> Finished:
    """Make the scoring call of ``step`` (asyncio) and finish it; fail open on any error, and
    at once while the breaker is open."""
    if (refused := step.refused()) is not None:
        return refused
    call = step.call()
    try:
        answer = await client.rerank(call.request, timeout=call.timeout_s)
    except Exception as exc:  # any failure of the call: fail open
        return step.failed(exc)
    return step.succeeded(answer, call)


def score_sync(step: Scoring, client: RerankerClient) -> Finished:
    """Blocking shell of :func:`score_async` (for the blocking client wrappers)."""
    if (refused := step.refused()) is not None:
        return refused
    call = step.call()
    try:
        answer = client.rerank(call.request, timeout=call.timeout_s)
    except Exception as exc:  # any failure of the call: fail open
        return step.failed(exc)
    return step.succeeded(answer, call)


async def finish_async(
    plan: SearchPlan,
    response: Mapping[str, Any],
    client: AsyncRerankerClient,
    stats: FailOpenStats,
    first_stage_ms: float,
) -> Finished:
    """Rerank the window of an engine response and cut the page; fail open on any error."""
    step = start(plan, response, stats, first_stage_ms)
    return step if isinstance(step, Finished) else await score_async(step, client)


def is_search_response(response: object) -> bool:
    """Whether an engine answer has ``hits.hits`` to rerank (errors and others pass as is)."""
    return isinstance(response, Mapping) and hits_of(response) is not None
