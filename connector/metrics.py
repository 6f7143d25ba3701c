"""Prometheus metrics of the REST front (``erank_rest_*``) and the query proxy (``erank_proxy_*``).

Each app has its own registry (:func:`erank_contract.metrics.app_registry`), served on its own
port by ``--metrics-port`` / ``--metrics-host`` like ``erank serve``'s. ``_total`` is appended
to counters on export.

REST front: ``erank_rest_requests{route, status}``, ``erank_rest_request_duration_seconds{route}``
(histogram), ``erank_rest_inflight_requests`` (gauge), ``erank_rest_scoring_failures{type}``
(failed scoring calls by the error type of ``erank_contract.vocabulary.SCORING_ERRORS``).
``route`` is the route's path, or ``unmatched`` (unknown path or method): never the raw path,
which would make one series per path a scanner tries.

Proxy: ``erank_proxy_searches{outcome}`` (reranked, failed-open, skipped; an ``_msearch`` item
is one search), ``erank_proxy_skipped{reason}``, ``erank_proxy_failed_open{type}`` (read from
the proxy's :class:`FailOpenStats` at each scrape: one count for ``/_erank/stats`` and
Prometheus), ``erank_proxy_request_duration_seconds{kind}`` (search, msearch or other: passed
through), ``erank_proxy_first_stage_duration_seconds`` (the engine's part of a reranked search),
``erank_proxy_rerank_duration_seconds`` (each scoring call), ``erank_proxy_inflight_requests``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import get_args

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.rewrite.failopen import FailOpenStats, Finished, Outcome
from connector.rewrite.search import route
from erank_contract.metrics import LATENCY_BUCKETS, MetricsServer, app_registry

log = logging.getLogger("erank.metrics")
UNMATCHED = "unmatched"


class AppMetrics:
    """One app's registry and, while the app runs with a metrics port, its endpoint; told of
    every request by the app's request context (connector/telemetry.py ``instrument``), which
    measures each once for the access line, the span and these."""

    def __init__(self) -> None:
        self.registry = app_registry()
        self.server: MetricsServer | None = None
        self.inflight: Gauge | None = None

    def request_started(self, request: web.Request) -> None:
        if self.inflight is not None:
            self.inflight.inc()

    def request_finished(self, request: web.Request, status: int, seconds: float) -> None:
        if self.inflight is not None:
            self.inflight.dec()
        self._done(request, status, seconds)

    def _done(self, request: web.Request, status: int, seconds: float) -> None:
        """One finished request, per app."""

    def serve_with(self, app: web.Application, host: str | None, port: int | None) -> None:
        """Serve ``/metrics`` on ``host:port`` from ``app``'s start to its cleanup (port None:
        not at all). A port that cannot be bound fails the app's start."""
        if port is None:
            return

        async def endpoint(_: web.Application) -> AsyncIterator[None]:
            self.server = MetricsServer(host, port, self.registry)
            log.info(
                "Prometheus metrics on http://%s:%d/metrics", self.server.host, self.server.port
            )
            try:
                yield
            finally:
                self.server.stop()
                self.server = None

        app.cleanup_ctx.append(endpoint)


class RestMetrics(AppMetrics):
    """The REST front's metrics; :attr:`middleware` counts and times every request."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "erank_rest_requests", "Requests by route and HTTP status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "erank_rest_request_duration_seconds", "Requests' duration by route", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inflight = Gauge("erank_rest_inflight_requests", "Requests in progress", registry=r)
        self.scoring_failures = Counter(
            "erank_rest_scoring_failures", "Failed scoring calls by error type", ["type"],
            registry=r,
        )  # fmt: skip

    def _done(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        name = resource.canonical if resource is not None else UNMATCHED
        self.requests.labels(name, str(status)).inc()
        self.latency.labels(name).observe(seconds)


class ProxyMetrics(AppMetrics):
    """The proxy's metrics: outcomes from ``stats``, latencies observed by the proxy."""

    def __init__(self, stats: FailOpenStats) -> None:
        super().__init__()
        r = self.registry
        r.register(_FailOpenCollector(stats))
        self.latency = Histogram(
            "erank_proxy_request_duration_seconds", "Requests' duration by kind", ["kind"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_stage = Histogram(
            "erank_proxy_first_stage_duration_seconds", "The engine's search of a reranked request",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rerank = Histogram(
            "erank_proxy_rerank_duration_seconds", "Scoring calls' duration",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inflight = Gauge("erank_proxy_inflight_requests", "Requests in progress", registry=r)

    def _done(self, request: web.Request, status: int, seconds: float) -> None:
        found = route(request.method, request.path)
        self.latency.labels(found[0] if found else "other").observe(seconds)

    def finished(self, done: Finished) -> Finished:
        """``done``, its scoring call (if it made one) timed."""
        if done.outcome != "skipped":
            self.rerank.observe(done.rerank_ms / 1000)
        return done


class _FailOpenCollector(Collector):
    """:class:`FailOpenStats` as Prometheus counters, read at each scrape."""

    def __init__(self, stats: FailOpenStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        counts = self._stats.as_json()
        searches = CounterMetricFamily(
            "erank_proxy_searches", "Searches by outcome", labels=["outcome"]
        )
        for outcome in get_args(Outcome):
            searches.add_metric([outcome], counts["outcomes"].get(outcome, 0))
        yield searches
        for name, key, label, what in (
            ("erank_proxy_skipped", "skipped", "reason", "Searches not reranked, by reason"),
            ("erank_proxy_failed_open", "failed_open", "type", "Searches failed open, by type"),
        ):
            family = CounterMetricFamily(name, what, labels=[label])
            for value, count in sorted(counts[key].items()):
                family.add_metric([value], count)
            yield family
