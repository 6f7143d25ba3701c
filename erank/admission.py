"""Bounded admission: a call over the server's limits is refused at once, never queued.

Without a bound, a burst queues in the engine and most of it waits out its deadline: the client
learns nothing until it is too late to go elsewhere. Here a call is counted from the moment the
servicer takes it until it returns, and refused with ``Overloaded`` (the service answers
``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo`` detail) when it would exceed
``max_inflight_requests`` calls or ``max_queued_documents`` documents. A call alone is always
admitted, so a request within ``max_documents`` can never be refused forever.

Shutting down, the server ``close``s admission: from then on calls are refused with
``ShuttingDown`` (``UNAVAILABLE``, which clients retry elsewhere) while admitted ones finish
(``idle``). Only then does gRPC stop: calls that reach a stopping gRPC server end CANCELLED,
which no client retries.

A refusal is decided in well under a millisecond, but gRPC's asyncio server takes one new call
per turn of the event loop, the loop the engine's work runs on too: in a burst, the turns spent
preparing and submitting the admitted calls' documents are turns the refusals wait (measured: a
burst of 200 calls against 16 places, p99 0.44 s at the client, median of 8). So an admitted call
waits for a burst's arrivals to stop (``settled``: 2 ms without a new call, 100 ms at most) before
its engine work; the same bursts then measured p99 0.25 s (tests/test_load_process.py).

All counting happens on the server's event loop, so no lock is needed. The counts are also
Prometheus gauges (``erank_inflight_requests``, ``erank_queued_documents``; erank/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from erank import metrics
from erank.settings import ServerSettings

_IDLE_POLL_S = 0.05
# A burst is still arriving while calls come closer than this; admitted calls wait at most
# ARRIVALS_MAX_WAIT_S for it to pass before their first engine work.
ARRIVALS_QUIET_S = 0.002
ARRIVALS_MAX_WAIT_S = 0.1


class Overloaded(Exception):
    """A refused call; ``limit`` is the setting that refused it."""

    def __init__(self, limit: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    """A call that arrived after the server stopped admitting calls."""


class Admission:
    """Counts admitted calls and their documents against the server's limits."""

    def __init__(self, max_requests: int, max_documents: int, retry_after_s: float) -> None:
        self.max_requests = max_requests
        self.max_documents = max_documents
        self.retry_after_s = retry_after_s
        self.requests = 0
        self.documents = 0
        self.closed = False
        self.last_arrival = 0.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Admission:
        return cls(
            settings.max_inflight_requests, settings.max_queued_documents, settings.retry_after_s
        )

    @contextlib.contextmanager
    def admit(self, documents: int) -> Iterator[None]:
        """Hold a place for one call of ``documents`` documents, or raise ``Overloaded``."""
        if self.closed:
            raise ShuttingDown("the server is shutting down; retry on another one")
        if self.requests >= self.max_requests:
            self._refuse(
                "max_inflight_requests",
                f"{self.requests} calls in flight; the limit is {self.max_requests}",
            )
        if self.requests and self.documents + documents > self.max_documents:
            self._refuse(
                "max_queued_documents",
                f"{self.documents} documents in flight and this call brings {documents}; "
                f"the limit is {self.max_documents}",
            )
        self.requests += 1
        self.documents += documents
        metrics.INFLIGHT.inc()
        metrics.QUEUED_DOCUMENTS.inc(documents)
        try:
            yield
        finally:
            self.requests -= 1
            self.documents -= documents
            metrics.INFLIGHT.dec()
            metrics.QUEUED_DOCUMENTS.dec(documents)

    def arrived(self) -> None:
        """A call reached the servicer (admitted or not)."""
        self.last_arrival = time.monotonic()

    async def settled(self) -> None:
        """Returns once no call arrived for ``ARRIVALS_QUIET_S`` (``ARRIVALS_MAX_WAIT_S`` at
        most): gRPC's asyncio server takes one new call per turn of the event loop, so while a
        burst arrives, every turn an admitted call spends preparing and submitting its documents
        is a turn the burst's refusals wait."""
        began = time.monotonic()
        while True:
            now = time.monotonic()
            quiet = self.last_arrival + ARRIVALS_QUIET_S - now
            left = began + ARRIVALS_MAX_WAIT_S - now
            if quiet <= 0 or left <= 0:
                return
            await asyncio.sleep(min(quiet, left))

    def close(self) -> None:
        """Admit no more calls."""
        self.closed = True

    async def idle(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for admitted calls to finish; True if they did."""
        deadline = time.monotonic() + timeout
        while self.requests and time.monotonic() < deadline:
            await asyncio.sleep(_IDLE_POLL_S)
        return not self.requests

    def _refuse(self, limit: str, why: str) -> None:
        raise Overloaded(
            limit,
            f"server overloaded: {why} ({limit}); retry after {self.retry_after_s:g} s",
            self.retry_after_s,
        )
