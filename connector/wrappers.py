"""ERank reranking inside the official clients, for applications that cannot add a proxy.

``RerankingElasticsearch`` / ``AsyncRerankingElasticsearch`` subclass elasticsearch-py's clients,
``RerankingOpenSearch`` / ``AsyncRerankingOpenSearch`` opensearch-py's. They are built like the
client they extend plus ``reranker=`` (scoring-server address(es)) and ``rerank_config=`` (a
:class:`~connector.proxy.config.ProxyConfig`, the proxy's YAML schema), and ``search()`` takes
the client's own arguments plus ``rerank=`` (the per-search ``ext.erank`` overrides, e.g.
``{"query_text": ..., "window": 100}``). ``search``/``msearch`` answers have the engine's own
shape, reranked exactly as the proxy does it: the request and response rewriting is the proxy's
(:mod:`connector.proxy.search`, :mod:`connector.proxy.hits`, :mod:`connector.proxy.failopen`),
hooked in where the client sends a request (elasticsearch-py's ``perform_request``,
opensearch-py's transport), so every call path (``search``, ``msearch``, ``options()``) goes
through it. A bad ``rerank``/``ext.erank`` raises :class:`~connector.proxy.config.ConfigError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from elastic_transport import ObjectApiResponse
from elasticsearch import AsyncElasticsearch, Elasticsearch
from opensearchpy import AsyncOpenSearch, AsyncTransport, OpenSearch, Transport

from connector.client import AsyncRerankerClient, RerankerClient
from connector.proxy.config import ConfigError, ProxyConfig, RerankOverrides
from connector.proxy.failopen import FailOpenStats, finish_async, finish_sync, is_search_response
from connector.proxy.msearch import (
    Item,
    forward_pairs,
    parse_ndjson,
    place_responses,
    plan_items,
    to_ndjson,
)
from connector.proxy.search import SearchPlan, Skip, plan_search, route, str_params

Rerank = Mapping[str, Any] | RerankOverrides | None


@dataclass
class Prepared:
    """A search or msearch rewritten for the engine, and what finishing it needs."""

    body: Any
    params: dict[str, Any]
    plan: SearchPlan | None = None
    items: list[Item] | None = None


def _with_rerank(body: Any, rerank: Rerank) -> Any:
    """``body`` with ``rerank`` as its ``ext.erank`` (the same parameter the proxy reads)."""
    if rerank is None:
        return body
    options = (
        rerank.model_dump(exclude_none=True) if isinstance(rerank, RerankOverrides) else rerank
    )
    body = dict(body or {})
    body["ext"] = {**(body.get("ext") or {}), "erank": dict(options)}
    return body


def _es_rerank(kwargs: dict[str, Any], rerank: Rerank) -> dict[str, Any]:
    """elasticsearch-py's ``search`` arguments with ``rerank`` as ``ext.erank``: in ``body``
    when the caller gave one, else as the client's own ``ext=`` argument (mixing ``body`` with
    ``knn=``, ``retriever=``, ``size=``... is deprecated by the client)."""
    if rerank is None:
        return kwargs
    if kwargs.get("body") is not None:
        return {**kwargs, "body": _with_rerank(kwargs["body"], rerank)}
    return {**kwargs, "ext": _with_rerank({"ext": kwargs.get("ext")}, rerank)["ext"]}


def _pairs(body: Any) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    if isinstance(body, (str, bytes)):
        return parse_ndjson(body)
    if isinstance(body, list) and len(body) % 2 == 0 and all(isinstance(x, dict) for x in body):
        return list(zip(body[0::2], body[1::2], strict=True))
    return None


class Reranking:
    """What a wrapped client needs: config, counters, and a scoring client made on first use
    (an asyncio gRPC channel belongs to the running loop)."""

    def __init__(
        self,
        reranker: str | Sequence[str] | RerankerClient | AsyncRerankerClient,
        config: ProxyConfig | None = None,
    ) -> None:
        self.config = config or ProxyConfig()
        self.stats = FailOpenStats(self.config.log_interval_s)
        self._at = reranker
        self._sync = reranker if isinstance(reranker, RerankerClient) else None
        self._async = reranker if isinstance(reranker, AsyncRerankerClient) else None

    @property
    def sync_client(self) -> RerankerClient:
        if self._sync is None:
            assert isinstance(self._at, (str, list, tuple)), "an asyncio client was given"
            self._sync = RerankerClient(self._at, security=self.config.scoring_server)
        return self._sync

    @property
    def async_client(self) -> AsyncRerankerClient:
        if self._async is None:
            assert isinstance(self._at, (str, list, tuple)), "a blocking client was given"
            self._async = AsyncRerankerClient(self._at, security=self.config.scoring_server)
        return self._async

    def prepare(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> Prepared | None:
        """The rewritten request, or None to send the original one unchanged."""
        found = route(method, path)
        if found is None:
            return None
        kind, target = found
        if kind == "msearch":
            pairs = _pairs(body)
            if pairs is None:
                return None
            items = plan_items(target, pairs, self.config)
            for item in items:
                if isinstance(item.plan, ConfigError):
                    raise item.plan
            lines: Any = forward_pairs(items)
            if isinstance(body, (str, bytes)):  # opensearch-py hands the transport NDJSON text
                lines = to_ndjson(lines).decode()
            return Prepared(lines, dict(params or {}), items=items)
        if body is not None and not isinstance(body, Mapping):
            return None
        plan = plan_search(target, str_params(params), body, self.config)
        if isinstance(plan, Skip):
            self.stats.count("skipped", plan.reason)
            return Prepared(plan.body if plan.stripped else body, dict(params or {}))
        kept = {k: v for k, v in (params or {}).items() if k not in ("from", "size")}
        return Prepared(plan.body, kept, plan=plan)

    def finish_sync(self, prepared: Prepared, answer: Any, millis: float) -> Any:
        if prepared.plan is not None and is_search_response(answer):
            return finish_sync(prepared.plan, answer, self.sync_client, self.stats, millis)[0]
        if prepared.items is None or not isinstance(answer, Mapping):
            return answer
        done = [
            finish_sync(i.plan, r, self.sync_client, self.stats, millis)[0]
            if isinstance(i.plan, SearchPlan) and is_search_response(r)
            else r
            for i, r in zip(prepared.items, answer.get("responses") or [], strict=False)
        ]
        return {**answer, "responses": place_responses(prepared.items, done)}

    async def finish_async(self, prepared: Prepared, answer: Any, millis: float) -> Any:
        client = self.async_client
        if prepared.plan is not None and is_search_response(answer):
            return (await finish_async(prepared.plan, answer, client, self.stats, millis))[0]
        if prepared.items is None or not isinstance(answer, Mapping):
            return answer

        async def one(item: Item, response: Any) -> Any:
            if isinstance(item.plan, SearchPlan) and is_search_response(response):
                return (await finish_async(item.plan, response, client, self.stats, millis))[0]
            return response

        pairs = zip(prepared.items, answer.get("responses") or [], strict=False)
        done = await asyncio.gather(*(one(i, r) for i, r in pairs))
        return {**answer, "responses": place_responses(prepared.items, done)}


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


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
        self.reranking = Reranking(reranker, rerank_config) if reranker is not None else None

    def options(self, **kwargs: Any) -> Any:
        client = super().options(**kwargs)
        client.reranking = self.reranking
        return client

    def search(self, *, rerank: Rerank = None, **kwargs: Any) -> Any:
        return super().search(**_es_rerank(kwargs, rerank))

    def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        prepared = self.reranking and self.reranking.prepare(
            method, path, kwargs.get("params"), kwargs.get("body")
        )
        if not prepared or self.reranking is None:
            return super().perform_request(method, path, **kwargs)
        began = time.perf_counter()
        kwargs.update(params=prepared.params, body=prepared.body)
        response = super().perform_request(method, path, **kwargs)
        body = self.reranking.finish_sync(prepared, response.body, _ms(began))
        return ObjectApiResponse(body=body, meta=response.meta)


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
        self.reranking = Reranking(reranker, rerank_config) if reranker is not None else None

    def options(self, **kwargs: Any) -> Any:
        client = super().options(**kwargs)
        client.reranking = self.reranking
        return client

    async def search(self, *, rerank: Rerank = None, **kwargs: Any) -> Any:
        return await super().search(**_es_rerank(kwargs, rerank))

    async def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        prepared = self.reranking and self.reranking.prepare(
            method, path, kwargs.get("params"), kwargs.get("body")
        )
        if not prepared or self.reranking is None:
            return await super().perform_request(method, path, **kwargs)
        began = time.perf_counter()
        kwargs.update(params=prepared.params, body=prepared.body)
        response = await super().perform_request(method, path, **kwargs)
        body = await self.reranking.finish_async(prepared, response.body, _ms(began))
        return ObjectApiResponse(body=body, meta=response.meta)


_TRANSPORT_ARGS = ("params", "body", "timeout", "ignore", "headers")


def _transport_kwargs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """opensearch-py transport arguments by name, however the client passed them."""
    return {**dict(zip(_TRANSPORT_ARGS, args, strict=False)), **kwargs}


class RerankingTransport(Transport):
    """opensearch-py transport that reranks searches when ``reranking`` is set."""

    reranking: Reranking | None = None

    def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        named = _transport_kwargs(args, kwargs)
        prepared = self.reranking and self.reranking.prepare(
            method, url, named.get("params"), named.get("body")
        )
        if not prepared or self.reranking is None:
            return super().perform_request(method, url, **named)
        began = time.perf_counter()
        named.update(params=prepared.params, body=prepared.body)
        answer = super().perform_request(method, url, **named)
        return self.reranking.finish_sync(prepared, answer, _ms(began))


class AsyncRerankingTransport(AsyncTransport):
    """opensearch-py asyncio transport that reranks searches when ``reranking`` is set."""

    reranking: Reranking | None = None

    async def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        named = _transport_kwargs(args, kwargs)
        prepared = self.reranking and self.reranking.prepare(
            method, url, named.get("params"), named.get("body")
        )
        if not prepared or self.reranking is None:
            return await super().perform_request(method, url, **named)
        began = time.perf_counter()
        named.update(params=prepared.params, body=prepared.body)
        answer = await super().perform_request(method, url, **named)
        return await self.reranking.finish_async(prepared, answer, _ms(began))


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
            self.transport.reranking = Reranking(reranker, rerank_config)  # type: ignore[attr-defined]

    def search(self, *, rerank: Rerank = None, body: Any = None, **kwargs: Any) -> Any:
        return super().search(body=_with_rerank(body, rerank), **kwargs)


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
            self.transport.reranking = Reranking(reranker, rerank_config)  # type: ignore[attr-defined]

    async def search(self, *, rerank: Rerank = None, body: Any = None, **kwargs: Any) -> Any:
        return await super().search(body=_with_rerank(body, rerank), **kwargs)
