"""Read a ``/metrics`` endpoint the way Prometheus does: over HTTP, with prometheus_client's own
parser of the text format (shared by tests/test_metrics.py and tests/proxy_metrics.py)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from erank_contract.metrics import MetricsServer


class Scrape:
    """One scrape: every sample by name and labels (``_total``, ``_count`` included)."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series never counted (Prometheus shows none)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(server: MetricsServer | None) -> Scrape:
    assert server is not None, "no metrics endpoint"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{server.host}:{server.port}/metrics") as response,
    ):
        assert response.status == 200
        return Scrape(await response.text())
