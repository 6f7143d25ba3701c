"""A circuit breaker per scoring server: stop calling a server in trouble, try again later.

Fail-open alone keeps searches answered while the scoring server is down, but each search still
pays for the failed call (a connect error, or the whole ``budget_ms`` of a hung server), and the
server gets no rest while it recovers. The breaker counts consecutive calls that failed in a way
that means the server is in trouble (unavailable, past its deadline, overloaded, internal error:
not a bad request, which it answered). After ``failures`` of them it opens: searches fail open at
once, without a call, for ``cooldown_ms``. Then it is half-open: one search makes a trial call;
success closes it, failure opens it for another cool-down.

The trial first asks the server's ``grpc.health.v1`` status (cheap, no token): a restarted server
opens its port at once but answers ``Rerank`` only once its model has loaded, and a trial sent
while it loads would fail and open the breaker for a whole cool-down more. While the health says
anything but SERVING the breaker stays half-open and the next search asks again after
``health_interval_ms``; the first SERVING lets the trial's ``Rerank`` through, so reranking
resumes as soon as the server can answer. A server that does not answer the health check at all
is a failed trial.

Why not pybreaker, aiobreaker, purgatory or circuitbreaker: each wraps the call it guards
(a decorator, ``call(func)`` or a context manager) and is either blocking-only, asyncio-only or
asyncio through Tornado. The scoring step here is an I/O-free core (``failopen.Scoring``) shared
by an asyncio shell (the proxy, the asyncio wrappers) and a blocking one (the blocking wrappers,
from any thread): it needs "may I call?" before and "this is how it went" after, under a lock.
That is the small state machine below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import grpc
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("erank.proxy")

State: TypeAlias = Literal["closed", "open", "half_open"]
# What ``admit`` lets through: a call, or the half-open trial (health first); None: no call.
Admission: TypeAlias = Literal["call", "trial"] | None
CIRCUIT_OPEN = "circuit_open"  # ext.erank.error.type of a search the breaker answered
# gRPC codes that say the server (or the way to it) is in trouble; others mean it answered.
TROUBLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class BreakerConfig(BaseModel):
    """``scoring_server.breaker`` of the proxy config (and of the wrappers' ``rerank_config``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(
        default=5, ge=0, le=1_000_000, description="consecutive failed calls that open it; 0: off"
    )
    cooldown_ms: int = Field(
        default=30_000, ge=1, le=3_600_000, description="how long it stays open before a trial"
    )
    health_interval_ms: int = Field(
        default=1_000,
        ge=1,
        le=3_600_000,
        description="half-open: how soon the server's health is asked again while not SERVING",
    )


def is_trouble(exc: BaseException) -> bool:
    """Whether a failed scoring call counts towards opening the breaker."""
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in TROUBLE_CODES
    return isinstance(exc, TimeoutError)


class Breaker:
    """The breaker of one scoring server; thread-safe (the blocking wrappers call from any
    thread). ``clock`` is seconds, monotonic."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.state: State = "closed"
        self.consecutive = 0  # trouble failures in a row (closed), or of the trial (half-open)
        self.opens = 0
        self.short_circuited = 0
        self._opened_at = 0.0
        self._trial_at: float | None = None  # when the half-open trial call began
        self._health_at = 0.0  # half-open: no trial before (the health said not SERVING)

    @property
    def enabled(self) -> bool:
        return self.config.failures > 0

    @property
    def cooldown_s(self) -> float:
        return self.config.cooldown_ms / 1000.0

    def admit(self) -> Admission:
        """``"call"``: a scoring call may be made now; ``"trial"``: the half-open trial (ask the
        server's health first: :meth:`not_serving` when it is not SERVING); None: no call, counted
        as short-circuited.

        Half-open admits one trial at a time; a trial never reported (its search was cancelled)
        stops blocking the others after one cool-down."""
        if not self.enabled:
            return "call"
        with self._lock:
            now = self._clock()
            if self.state == "open" and now - self._opened_at >= self.cooldown_s:
                self._change("half_open", "one trial call goes to the scoring server")
            if self.state == "closed":
                return "call"
            if self._trial_at is None:
                trial_free = now >= self._health_at
            else:
                trial_free = now - self._trial_at >= self.cooldown_s
            if self.state == "half_open" and trial_free:
                self._trial_at = now
                return "trial"
            self.short_circuited += 1
            return None

    def not_serving(self) -> None:
        """The trial's health check answered, but not SERVING (the model is still loading, or
        the server is draining): no call; half-open still, the next trial after
        ``health_interval_ms``."""
        if not self.enabled:
            return
        with self._lock:
            if self.state == "half_open":
                self._trial_at = None
                self._health_at = self._clock() + self.config.health_interval_ms / 1000.0

    def record(self, exc: BaseException | None) -> None:
        """How an admitted call went: ``None`` (it answered) or the error it raised."""
        if not self.enabled:
            return
        with self._lock:
            if exc is None or not is_trouble(exc):
                self.consecutive = 0
                if self.state != "closed":
                    self._trial_at = None
                    self._change("closed", "the scoring server answered again")
                return
            self.consecutive += 1
            if self.state == "half_open" or (
                self.state == "closed" and self.consecutive >= self.config.failures
            ):
                self._open()

    def _open(self) -> None:
        self.opens += 1
        self._opened_at = self._clock()
        self._trial_at = None
        self._health_at = 0.0
        why = f"after {self.consecutive} failed scoring call(s) in a row"
        self._change(
            "open", f"{why}; searches fail open without calling it for {self.cooldown_s:g} s"
        )

    def _change(self, state: State, why: str) -> None:
        """Move to ``state`` and log it: once per change, never per search."""
        self.state = state
        level = logging.INFO if state == "half_open" else logging.WARNING
        log.log(level, "scoring server circuit breaker %s: %s", state.replace("_", "-"), why)

    def retry_in_ms(self) -> int:
        """Milliseconds until the next trial call may be made (0: now or closed)."""
        with self._lock:
            if self.state == "closed":
                return 0
            if self.state == "half_open":
                left = self._health_at - self._clock() if self._trial_at is None else 0.0
            else:
                left = self._opened_at + self.cooldown_s - self._clock()
            return max(0, round(left * 1000))

    def summary(self) -> dict[str, Any]:
        """``ext.erank.breaker`` of a failed-open search: the state and when it is retried."""
        return {"state": self.state, "retry_in_ms": self.retry_in_ms()}

    def as_json(self) -> dict[str, Any]:
        """The ``breaker`` section of ``GET /_erank/stats``."""
        with self._lock:
            state, consecutive = self.state, self.consecutive
            opens, short = self.opens, self.short_circuited
        return {
            "state": state if self.enabled else "disabled",
            "consecutive_failures": consecutive,
            "opens": opens,
            "short_circuited": short,
            "failures": self.config.failures,
            "cooldown_ms": self.config.cooldown_ms,
            "health_interval_ms": self.config.health_interval_ms,
        }
