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
