"""The I/O-free core of the client wrappers (:mod:`connector.wrappers`): what a wrapped client
does before it sends a request and after the engine answers, whatever its flavour.

:meth:`Reranking.prepare` rewrites a search or msearch as the proxy does (or says to send it as
it is); :meth:`Reranking.steps` turns the engine's answer into one step per search (a
:class:`~connector.rewrite.failopen.Scoring` call to make, or what needs none);
:meth:`Reranking.assemble` builds the caller's answer from the finished steps. The blocking and
asyncio shells (:meth:`Reranking.finish_sync`, :meth:`Reranking.finish_async`) differ only in
how they wait for the scoring calls: one after the other, or all at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.rewrite.config import ConfigError, ProxyConfig, RerankOverrides
from connector.rewrite.failopen import (
    FailOpenStats,
    Finished,
    Scoring,
    is_search_response,
    score_async,
    score_sync,
    start,
)
from connector.rewrite.filterpath import FilterPath
from connector.rewrite.msearch import (
    Item,
    forward_pairs,
    parse_ndjson,
    place_responses,
    plan_items,
    to_ndjson,
)
from connector.rewrite.search import NOT_FORWARDED, SearchPlan, Skip, plan_search, route, str_params
from erank_contract.client import AsyncRerankerClient, RerankerClient

Rerank = Mapping[str, Any] | RerankOverrides | None


@dataclass
class Prepared:
    """A search or msearch rewritten for the engine, and what finishing it needs."""

    body: Any
    params: dict[str, Any]
    plan: SearchPlan | None = None
    items: list[Item] | None = None
    filter_path: FilterPath | None = None  # an msearch's: applied to its finished answer


def with_rerank(body: Any, rerank: Rerank) -> Any:
    """``body`` with ``rerank`` as its ``ext.erank`` (the same parameter the proxy reads)."""
    if rerank is None:
        return body
    if isinstance(rerank, RerankOverrides):
        options: Mapping[str, Any] = rerank.model_dump(exclude_none=True)
    elif isinstance(rerank, Mapping):
        options = rerank
    else:
        raise ConfigError(
            "[rerank] must be a mapping of ext.erank options (e.g. {'window': 20}) or a"
            f" RerankOverrides, not {type(rerank).__name__}"
        )
    body = dict(body or {})
    body["ext"] = {**(body.get("ext") or {}), "erank": dict(options)}
    return body


def es_rerank(kwargs: dict[str, Any], rerank: Rerank) -> dict[str, Any]:
    """elasticsearch-py's ``search`` arguments with ``rerank`` as ``ext.erank``: in ``body``
    when the caller gave one, else as the client's own ``ext=`` argument (mixing ``body`` with
    ``knn=``, ``retriever=``, ``size=``... is deprecated by the client)."""
    if rerank is None:
        return kwargs
    if kwargs.get("body") is not None:
        return {**kwargs, "body": with_rerank(kwargs["body"], rerank)}
    return {**kwargs, "ext": with_rerank({"ext": kwargs.get("ext")}, rerank)["ext"]}


def _pairs(body: Any) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    if isinstance(body, (str, bytes)):
        return parse_ndjson(body)
    if isinstance(body, list) and len(body) % 2 == 0 and all(isinstance(x, dict) for x in body):
        return list(zip(body[0::2], body[1::2], strict=True))
    return None


class Reranking:
    """What a wrapped client needs: config, counters (``stats``), and a scoring client made on
    first use (an asyncio gRPC channel belongs to the running loop). Every wrapper has one as
    its ``reranking`` attribute; closing the wrapper closes its scoring client."""

    def __init__(
        self,
        reranker: str | Sequence[str] | RerankerClient | AsyncRerankerClient,
        config: ProxyConfig | None,
        elasticsearch: bool,
    ) -> None:
        self.elasticsearch = elasticsearch  # else OpenSearch: how filter_path treats empties
        self.config = config or ProxyConfig()
        self.stats = FailOpenStats(self.config.log_interval_s, self.config.scoring_server.breaker)
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

    def close_sync(self) -> None:
        """Close the blocking scoring channel this made (a later search opens a new one); a
        client the caller gave stays open: the caller owns it."""
        if self._sync is not None and self._sync is not self._at:
            self._sync.close()
            self._sync = None

    async def close_async(self) -> None:
        """Close the asyncio scoring channel this made (as :meth:`close_sync`)."""
        if self._async is not None and self._async is not self._at:
            await self._async.close()
            self._async = None

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
            given = str_params(params).get("filter_path")
            kept = {k: v for k, v in (params or {}).items() if k != "filter_path"}
            trim = FilterPath.parse(given) if given else None
            return Prepared(lines, kept, items=items, filter_path=trim)
        if body is not None and not isinstance(body, Mapping):
            return None
        plan = plan_search(target, str_params(params), body, self.config)
        if isinstance(plan, Skip):
            self.stats.count("skipped", plan.reason)
            return Prepared(plan.body if plan.stripped else body, dict(params or {}))
        kept = {k: v for k, v in (params or {}).items() if k not in NOT_FORWARDED}
        return Prepared(plan.body, kept, plan=plan)

    def steps(self, prepared: Prepared, answer: Any, millis: float) -> list[Any]:
        """One step per search of the engine's answer: a :class:`Scoring` to make, or what
        needs no call (a :class:`Finished`, or an item's answer to hand back as it is)."""
        if prepared.plan is not None:
            if not is_search_response(answer):
                return [answer]
            return [start(prepared.plan, answer, self.stats, millis)]
        responses = answer.get("responses") if isinstance(answer, Mapping) else None
        return [
            start(item.plan, r, self.stats, millis)
            if isinstance(item.plan, SearchPlan) and is_search_response(r)
            else r
            for item, r in zip(prepared.items or [], responses or [], strict=False)
        ]

    def assemble(self, prepared: Prepared, answer: Any, done: Sequence[Any]) -> Any:
        """The answer for the caller from the finished steps (``filter_path`` applied)."""
        if prepared.plan is not None:
            (one,) = done
            return (
                prepared.plan.trim(one.body, self.elasticsearch)
                if isinstance(one, Finished)
                else one
            )
        bodies = [d.body if isinstance(d, Finished) else d for d in done]
        if prepared.items is None or not isinstance(answer, Mapping):
            return answer
        body = {**answer, "responses": place_responses(prepared.items, bodies)}
        trim = prepared.filter_path
        return trim.apply(body, self.elasticsearch) if trim else body

    def finish_sync(self, prepared: Prepared, answer: Any, millis: float) -> Any:
        steps = self.steps(prepared, answer, millis)
        done = [score_sync(s, self.sync_client) if isinstance(s, Scoring) else s for s in steps]
        return self.assemble(prepared, answer, done)

    async def finish_async(self, prepared: Prepared, answer: Any, millis: float) -> Any:
        steps = self.steps(prepared, answer, millis)

        async def one(step: Any) -> Any:
            return await score_async(step, self.async_client) if isinstance(step, Scoring) else step

        done = await asyncio.gather(*(one(s) for s in steps))
        return self.assemble(prepared, answer, done)


def millis_since(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def prepare_call(
    reranking: Reranking | None, method: str, path: str, named: dict[str, Any]
) -> tuple[Reranking, Prepared] | None:
    """The reranking and the prepared request, ``named``'s params and body rewritten; None to
    send the request unchanged. The I/O-free half of the four ``perform_request`` shells."""
    if reranking is None:
        return None
    prepared = reranking.prepare(method, path, named.get("params"), named.get("body"))
    if prepared is None:
        return None
    named.update(params=prepared.params, body=prepared.body)
    return reranking, prepared
