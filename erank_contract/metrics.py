"""Prometheus ``/metrics`` on a port of its own: one endpoint for all three hops.

The scoring server (``erank serve``), the REST front (``erank rest``) and the query proxy
(``erank proxy``) each serve their metrics with :class:`MetricsServer` at
``--metrics-host:--metrics-port`` (loopback unless told otherwise: metrics tell load and traffic to
whoever can reach them). Never on the proxy's own port: it is an Elasticsearch drop-in, where
``/metrics`` is a valid index path.

It lives here because the server (``erank/``) and the adapters (``connector/``) both use it and
neither may import the other. Only they import this module, and both their extras ([server],
[connector]) install prometheus-client; the contract's client never imports it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

DEFAULT_METRICS_HOST = "127.0.0.1"
# Latency buckets in seconds for every hop: a reranking call takes milliseconds (cache hits,
# score-only) to a minute (a long window in full mode on a busy engine).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def app_registry() -> CollectorRegistry:
    """A registry for one app's metrics, with the process's own (CPU, memory, GC) as the
    default registry has them. One per app, so that apps sharing a process (tests, embedding)
    count apart and never register a metric name twice."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsServer:
    """The ``/metrics`` HTTP endpoint (Prometheus text format) of ``registry``, on its own
    thread; ``host`` and ``port`` are the bound address (useful with port 0)."""

    def __init__(self, host: str | None, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self._server: Any
        addr = host or DEFAULT_METRICS_HOST
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.host = str(self._server.server_address[0])
        self.port = int(self._server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
