"""ERank reranking inside the official clients, for applications that cannot add a proxy.

``RerankingElasticsearch`` / ``AsyncRerankingElasticsearch`` subclass elasticsearch-py's clients,
``RerankingOpenSearch`` / ``AsyncRerankingOpenSearch`` opensearch-py's. They are built like the
client they extend plus ``reranker=`` (scoring-server address(es)) and ``rerank_config=`` (a
:class:`~connector.rewrite.config.ProxyConfig`, the proxy's YAML schema), and ``search()`` takes
the client's own arguments plus ``rerank=`` (the per-search ``ext.erank`` overrides, e.g.
``{"query_text": ..., "window": 100}``). ``search``/``msearch`` answers have the engine's own
shape, reranked exactly as the proxy does it: the request and response rewriting is the proxy's
(:mod:`connector.rewrite.search`, :mod:`connector.rewrite.hits`, :mod:`connector.rewrite.failopen`),
hooked in where the client sends a request (elasticsearch-py's ``perform_request``,
opensearch-py's transport), so every call path (``search``, ``msearch``, ``options()``) goes
through it. Each hook is a thin shell around :mod:`connector.wrapping`, the I/O-free part. A
bad ``rerank``/``ext.erank`` raises :class:`~connector.rewrite.config.ConfigError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from elastic_transport import ObjectApiResponse
from elasticsearch import AsyncElasticsearch, Elasticsearch
from opensearchpy import AsyncOpenSearch, AsyncTransport, OpenSearch, Transport

from connector.rewrite.config import ProxyConfig
from connector.wrapping import (
    Rerank,
    Reranking,
    es_rerank,
    millis_since,
    prepare_call,
    with_rerank,
)
from erank_contract.client import AsyncRerankerClient, RerankerClient


class RerankingElasticsearch(Elasticsearch):
    """``Elasticsearch`` whose searches are reranked by ERank (see the module docstring)."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        reranker: str | Sequence[str] | RerankerClient | None = None,
        rerank_config: ProxyConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, **kwargs)
        self.reranking = (
            Reranking(reranker, rerank_config, elasticsearch=True) if reranker is not None else None
        )

    def options(self, **kwargs: Any) -> Any:
        client = super().options(**kwargs)
        client.reranking = self.reranking
        return client

    def search(self, *, rerank: Rerank = None, **kwargs: Any) -> Any:
        return super().search(**es_rerank(kwargs, rerank))

    def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        found = prepare_call(self.reranking, method, path, kwargs)
        if found is None:
            return super().perform_request(method, path, **kwargs)
        reranking, prepared = found
        began = time.perf_counter()
        response = super().perform_request(method, path, **kwargs)
        body = reranking.finish_sync(prepared, response.body, millis_since(began))
        return ObjectApiResponse(body=body, meta=response.meta)

    def close(self) -> None:
        """Close the connections to the engine and the scoring server."""
        super().close()
        if self.reranking is not None:
            self.reranking.close_sync()


class AsyncRerankingElasticsearch(AsyncElasticsearch):
    """``AsyncElasticsearch`` whose searches are reranked by ERank."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        reranker: str | Sequence[str] | AsyncRerankerClient | None = None,
        rerank_config: ProxyConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, **kwargs)
        self.reranking = (
            Reranking(reranker, rerank_config, elasticsearch=True) if reranker is not None else None
        )

    def options(self, **kwargs: Any) -> Any:
        client = super().options(**kwargs)
        client.reranking = self.reranking
        return client

    async def search(self, *, rerank: Rerank = None, **kwargs: Any) -> Any:
        return await super().search(**es_rerank(kwargs, rerank))

    async def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        found = prepare_call(self.reranking, method, path, kwargs)
        if found is None:
            return await super().perform_request(method, path, **kwargs)
        reranking, prepared = found
        began = time.perf_counter()
        response = await super().perform_request(method, path, **kwargs)
        body = await reranking.finish_async(prepared, response.body, millis_since(began))
        return ObjectApiResponse(body=body, meta=response.meta)

    async def close(self) -> None:
        """Close the connections to the engine and the scoring server."""
        await super().close()
        if self.reranking is not None:
            await self.reranking.close_async()


_TRANSPORT_ARGS = ("params", "body", "timeout", "ignore", "headers")


def _transport_kwargs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """opensearch-py transport arguments by name, however the client passed them."""
    return {**dict(zip(_TRANSPORT_ARGS, args, strict=False)), **kwargs}


class RerankingTransport(Transport):
    """opensearch-py transport that reranks searches when ``reranking`` is set."""

    reranking: Reranking | None = None

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        named = _transport_kwargs(args, kwargs)
        found = prepare_call(self.reranking, method, url, named)
        if found is None:
            return super().perform_request(method, url, **named)
        reranking, prepared = found
        began = time.perf_counter()
        answer = super().perform_request(method, url, **named)
        return reranking.finish_sync(prepared, answer, millis_since(began))

    def close(self) -> Any:
        super().close()
        if self.reranking is not None:
            self.reranking.close_sync()


class AsyncRerankingTransport(AsyncTransport):
    """opensearch-py asyncio transport that reranks searches when ``reranking`` is set."""

    reranking: Reranking | None = None

    async def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        named = _transport_kwargs(args, kwargs)
        found = prepare_call(self.reranking, method, url, named)
        if found is None:
            return await super().perform_request(method, url, **named)
        reranking, prepared = found
        began = time.perf_counter()
        answer = await super().perform_request(method, url, **named)
        return await reranking.finish_async(prepared, answer, millis_since(began))

    async def close(self) -> None:
        await super().close()
        if self.reranking is not None:
            await self.reranking.close_async()


class RerankingOpenSearch(OpenSearch):
    """``OpenSearch`` whose searches are reranked by ERank."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        reranker: str | Sequence[str] | RerankerClient | None = None,
        rerank_config: ProxyConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, transport_class=RerankingTransport, **kwargs)
        if reranker is not None:
            reranking = Reranking(reranker, rerank_config, elasticsearch=False)
            self.transport.reranking = reranking  # type: ignore[attr-defined]

    @property
    def reranking(self) -> Reranking | None:
        """Config, counters and scoring client: where the Elasticsearch wrappers have it."""
        return self.transport.reranking  # type: ignore[attr-defined]

    def search(self, *, rerank: Rerank = None, body: Any = None, **kwargs: Any) -> Any:
        return super().search(body=with_rerank(body, rerank), **kwargs)


class AsyncRerankingOpenSearch(AsyncOpenSearch):
    """``AsyncOpenSearch`` whose searches are reranked by ERank."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        reranker: str | Sequence[str] | AsyncRerankerClient | None = None,
        rerank_config: ProxyConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, transport_class=AsyncRerankingTransport, **kwargs)
        if reranker is not None:
            reranking = Reranking(reranker, rerank_config, elasticsearch=False)
            self.transport.reranking = reranking  # type: ignore[attr-defined]

    @property
    def reranking(self) -> Reranking | None:
        """Config, counters and scoring client: where the Elasticsearch wrappers have it."""
        return self.transport.reranking  # type: ignore[attr-defined]

    async def search(self, *, rerank: Rerank = None, body: Any = None, **kwargs: Any) -> Any:
        return await super().search(body=with_rerank(body, rerank), **kwargs)
