"""A scoring call's budget: what the scoring server is told, and the connector's own share of it.

Every connector (the proxy, the client wrappers, the REST front) gives a scoring call a budget in
milliseconds (``budget_ms``) and says what happens when the model needs longer (``on_budget``):

- ``cut`` (the default): the gRPC deadline is the whole remaining budget, and the request asks
  for ``DEADLINE_POLICY_CUT`` with ``budget_ms`` = that budget less what the connector itself
  spends around the call (the round trip to the server and back, and building its own answer
  once the scores are in). Shortly before its deadline the server closes every document's
  reasoning and reads an answer, so it answers, cut documents marked, before the connector's
  deadline passes, and the connector answers within its budget. Only a server that cannot answer
  at all (down, an error, or the deadline passed anyway) fails the call.
- ``fail_open``: all or nothing, as before cut answers existed: ``DEADLINE_POLICY_FAIL``, no
  ``budget_ms``, the gRPC deadline the whole budget. Past it, the proxy and the wrappers fail
  open (the engine's own page) and the REST front answers 504.

The connector's share is measured, not configured: :class:`Overhead` keeps a moving estimate of
each part, one per connector (the proxy, each wrapped client, the REST front), shown in the
proxy's ``GET /_erank/stats`` and the wrappers' ``reranking.stats``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import UINT32_MAX

OnBudget = Literal["cut", "fail_open"]
DEFAULT_ON_BUDGET: OnBudget = "cut"
DEADLINE_POLICIES: Mapping[OnBudget, pb.DeadlinePolicy.ValueType] = MappingProxyType(
    {"cut": pb.DEADLINE_POLICY_CUT, "fail_open": pb.DEADLINE_POLICY_FAIL}
)
MAX_BUDGET_MS = 300_000

# Where the estimates start, before the first call has been measured (a loaded machine's
# loopback; a remote server raises them with its first answers).
INITIAL_TRANSPORT_MS = 5.0
INITIAL_ASSEMBLY_MS = 1.0
# Weights of a new measurement in the moving estimates: one above the estimate replaces it at
# once (an answer later than the gRPC deadline fails the whole call, one a little early costs a
# few tokens of reasoning), one below moves it only slowly.
RISE = 1.0
FALL = 0.1


def pairing_error(on_budget: OnBudget | None, finish_in_background: bool | None) -> str | None:
    """Why ``finish_in_background`` does not go with ``on_budget`` (the server would ignore it:
    only a cut call leaves documents to finish), or None."""
    if finish_in_background and on_budget == "fail_open":
        return "finish_in_background only applies to on_budget: cut"
    return None


@dataclass(frozen=True)
class Deadline:
    """One scoring call's deadline: the gRPC timeout, and the request's deadline fields."""

    timeout_s: float
    budget_ms: int  # RerankRequest.budget_ms: 0 = none (the gRPC deadline alone)
    policy: pb.DeadlinePolicy.ValueType
    finish_in_background: bool = False

    def apply(self, request: pb.RerankRequest) -> pb.RerankRequest:
        """``request`` (built for this one call) with the deadline fields set."""
        request.budget_ms = self.budget_ms
        request.deadline_policy = self.policy
        request.finish_in_background = self.finish_in_background
        return request


def _moved(estimate: float, sample: float) -> float:
    weight = RISE if sample > estimate else FALL
    return estimate + weight * (sample - estimate)


class Overhead:
    """Moving estimates of what a connector spends on a scoring call beyond the server's own
    time: ``transport_ms`` (request out, answer back) and ``assembly_ms`` (the connector's
    answer built from the scores). Thread-safe: the blocking wrappers may share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.transport_ms = INITIAL_TRANSPORT_MS
        self.assembly_ms = INITIAL_ASSEMBLY_MS
        self.calls = 0  # calls measured
        self.to_deadline = 0  # of them, answers the server worked to its deadline for

    @property
    def total_ms(self) -> float:
        return self.transport_ms + self.assembly_ms

    def deadline(
        self,
        budget_ms: float,
        spent_ms: float = 0.0,
        on_budget: OnBudget = DEFAULT_ON_BUDGET,
        finish_in_background: bool = False,
    ) -> Deadline:
        """The deadline of a call whose budget is ``budget_ms``, ``spent_ms`` of it gone.

        ``fail_open``: the whole budget as the gRPC deadline, nothing else (as before cut
        answers existed). ``cut``: the gRPC deadline is what remains of the budget and the
        server gets that less the estimated overhead, at least 1 ms."""
        policy = DEADLINE_POLICIES[on_budget]
        if on_budget == "fail_open":
            return Deadline(budget_ms / 1000.0, 0, policy)
        remaining = max(1.0, budget_ms - spent_ms)
        server_ms = min(UINT32_MAX, max(1, math.floor(remaining - self.total_ms)))
        return Deadline(remaining / 1000.0, server_ms, policy, finish_in_background)

    def called(self, call_ms: float, answer: pb.RerankResponse) -> None:
        """Learn from one answered call that took ``call_ms`` from sending to its answer.

        When the server worked to its deadline (it cut or left documents unscored), it answered
        at about ``completions.deadline_ms`` after receiving the call, so the rest of
        ``call_ms`` is the round trip (and any lateness of the server, which the next budget
        must leave room for too). Any other call bounds the round trip from above by its
        whole length."""
        done = answer.completions
        worked_to_deadline = done.deadline_ms > 0 and (done.cut > 0 or done.unscored > 0)
        with self._lock:
            self.calls += 1
            if worked_to_deadline:
                self.to_deadline += 1
                self.transport_ms = _moved(self.transport_ms, max(0.0, call_ms - done.deadline_ms))
            elif call_ms < self.transport_ms:
                self.transport_ms = _moved(self.transport_ms, call_ms)

    def assembled(self, millis: float) -> None:
        """Learn the time one answer took to build once its scores had arrived."""
        with self._lock:
            self.assembly_ms = _moved(self.assembly_ms, max(0.0, millis))

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "transport_ms": round(self.transport_ms, 3),
                "assembly_ms": round(self.assembly_ms, 3),
                "calls": self.calls,
                "to_deadline": self.to_deadline,
            }
