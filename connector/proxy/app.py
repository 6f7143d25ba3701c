"""``erank proxy``: an HTTP reverse proxy in front of Elasticsearch or OpenSearch that reranks.

It is a drop-in endpoint: point any client (``elasticsearch``, ``opensearch-py``, curl) at it
instead of the engine. ``GET|POST /_search``, ``/{index}/_search`` and the items of
``_msearch`` are reranked (see :mod:`connector.rewrite.search` for which ones); every other request
and every search that is passed through streams to the engine and back byte for byte (status,
headers such as ``X-Elastic-Product``, compressed bodies), over a pool of kept-alive
connections. Reranked responses keep the engine's headers and content type and are gzipped when
the client accepts it. ``X-Erank-Status`` says ``reranked``, ``failed-open`` or ``skipped``;
``X-Erank-Completions`` how many hits had a full, a cut or no answer (connector/budget.py);
``Server-Timing`` gives the first-stage and rerank milliseconds; ``X-Request-Id`` the request's
id (connector/telemetry.py; a caller's own goes to the engine as sent, none is added there).
``GET /_erank/stats`` counts outcomes (index names cannot start with ``_``, so no engine path is
hidden); Prometheus metrics (connector/metrics.py) are on a port of their own, since ``/metrics``
is a valid index path.

aiohttp does the HTTP on both sides (server and pooled client); the scoring server is reached
through the one gRPC client, :class:`erank_contract.client.AsyncRerankerClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, hdrs, web
from aiohttp.web_response import ContentCoding
from multidict import CIMultiDict
from yarl import URL

from connector.metrics import ProxyMetrics
from connector.proxy.http import (
    BODY_HEADERS,
    HOP_BY_HOP,
    NOT_ADDED,
    UNDECODABLE,
    Upstream,
    body_type,
    decode_body,
    dumps,
    json_body,
)
from connector.rewrite.config import ConfigError, ProxyConfig
from connector.rewrite.failopen import (
    STATUS_HEADER,
    FailOpenStats,
    Outcome,
    finish_async,
    is_search_response,
    outcome_headers,
)
from connector.rewrite.filterpath import FilterPath
from connector.rewrite.hits import Timings
from connector.rewrite.msearch import Item, forward_pairs, parse_ndjson, place_responses, plan_items
from connector.rewrite.msearch import to_ndjson as ndjson
from connector.rewrite.search import SearchPlan, Skip, error_json, plan_search, route
from connector.telemetry import SERVER_LOG, instrument
from erank_contract.client import AsyncRerankerClient

log = logging.getLogger("erank.proxy")
STATS_PATH = "/_erank/stats"
ELASTIC_PRODUCT = "X-Elastic-Product"  # Elasticsearch sends it with every answer


class Proxy:
    """The proxy's state: upstream connection pool, scoring client, config, counters."""

    def __init__(
        self,
        upstream: str,
        reranker: AsyncRerankerClient | str | Sequence[str],
        config: ProxyConfig,
        pool_size: int = 100,
    ) -> None:
        self.base = upstream.rstrip("/")
        self._reranker_at = reranker
        self._reranker = reranker if isinstance(reranker, AsyncRerankerClient) else None
        self.config = config
        self.stats = FailOpenStats(config.log_interval_s, config.scoring_server.breaker)
        self.metrics = ProxyMetrics(self.stats)
        self.pool_size = pool_size
        self.product: str | None = None  # the engine's X-Elastic-Product, once seen
        self._session: ClientSession | None = None

    @property
    def session(self) -> ClientSession:
        if self._session is None:
            # auto_decompress off: pass-through bodies go back byte for byte, still compressed
            self._session = ClientSession(
                connector=TCPConnector(limit=self.pool_size, keepalive_timeout=60),
                auto_decompress=False,
                timeout=ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    @property
    def reranker(self) -> AsyncRerankerClient:
        """The gRPC client, made on first use: a grpc.aio channel belongs to the running loop."""
        if self._reranker is None:
            assert not isinstance(self._reranker_at, AsyncRerankerClient)
            security = self.config.scoring_server
            self._reranker = AsyncRerankerClient(self._reranker_at, security=security)
        return self._reranker

    async def close(self) -> None:
        """Close the upstream pool and the scoring client."""
        if self._session is not None:
            await self._session.close()
        if self._reranker is not None:
            await self._reranker.close()

    def _url(self, request: web.Request, params: Mapping[str, str] | None = None) -> URL:
        if params is None:
            return URL(self.base + request.raw_path, encoded=True)
        query = f"?{urlencode(params)}" if params else ""
        return URL(self.base + request.raw_path.split("?", 1)[0] + query, encoded=True)

    def _headers(
        self, request: web.Request, rewritten: bool, plain_answer: bool
    ) -> CIMultiDict[str]:
        """Request headers for the engine: as the client sent them, less hop-by-hop ones. A
        rewritten body goes plain; an answer the proxy must read is asked for plain."""
        skip = set(HOP_BY_HOP)
        if rewritten:
            skip |= BODY_HEADERS
        if plain_answer:
            skip.add("accept-encoding")
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in skip)
        if plain_answer:
            headers[hdrs.ACCEPT_ENCODING] = "identity"
        return headers

    def _remember(self, headers: Mapping[str, str]) -> None:
        self.product = headers.get(ELASTIC_PRODUCT, self.product)

    async def stream(
        self,
        request: web.Request,
        body: bytes | None = None,
        *,
        rewritten: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Forward the request and stream the engine's answer back unchanged. ``body`` None:
        stream the client's body; else send these bytes (``rewritten``: a new plain body)."""
        data: Any = body if body is not None else request.content if request.body_exists else None
        headers = self._headers(request, rewritten=rewritten, plain_answer=False)
        try:
            async with self.session.request(
                request.method, self._url(request), headers=headers, data=data,
                allow_redirects=False, skip_auto_headers=NOT_ADDED,
            ) as upstream:  # fmt: skip
                self._remember(upstream.headers)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        response.headers.add(key, value)
                response.headers.update(extra or {})
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as exc:
            return self.error(request, f"upstream unreachable: {exc}", 502, "connect_exception")

    async def fetch(
        self, request: web.Request, params: Mapping[str, str], body: bytes, content_type: str
    ) -> Upstream:
        """Send a rewritten search and read the engine's whole (plain) answer."""
        headers = self._headers(request, rewritten=True, plain_answer=True)
        headers[hdrs.CONTENT_TYPE] = content_type
        began = time.perf_counter()
        async with self.session.request(
            request.method, self._url(request, params), headers=headers, data=body,
            allow_redirects=False, skip_auto_headers=NOT_ADDED,
        ) as upstream:  # fmt: skip
            raw = await upstream.read()
            millis = (time.perf_counter() - began) * 1000
            self.metrics.first_stage.observe(millis / 1000)
            self._remember(upstream.headers)
            parsed: Any = None
            if upstream.status == 200 and not upstream.headers.get(hdrs.CONTENT_ENCODING):
                with contextlib.suppress(ValueError):
                    parsed = json.loads(raw)
            return Upstream(upstream.status, upstream.headers, raw, parsed, millis)

    def reply(
        self,
        request: web.Request,
        upstream: Upstream,
        body: Any | None,
        extra: Mapping[str, str] | None = None,
    ) -> web.Response:
        """The engine's answer (``body`` None: its bytes as they came), with its headers and
        ``extra`` (the proxy's: ``failopen.outcome_headers``)."""
        headers = CIMultiDict(
            (k, v)
            for k, v in upstream.headers.items()
            if k.lower() not in HOP_BY_HOP | (BODY_HEADERS if body is not None else set())
        )
        headers.update(extra or {})
        raw = upstream.raw if body is None else json.dumps(body).encode()
        response = web.Response(body=raw, status=upstream.status, headers=headers)
        if body is not None and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
            response.enable_compression(ContentCoding.gzip)
        return response

    def error(
        self, request: web.Request, reason: str, status: int = 400, kind: str | None = None
    ) -> web.Response:
        """An error in the engine's own JSON shape and content type."""
        body = error_json(reason, status)
        if kind:
            body["error"]["type"] = body["error"]["root_cause"][0]["type"] = kind
        accept = request.headers.get(hdrs.ACCEPT, "")
        content_type = accept if "vnd.elasticsearch+json" in accept else "application/json"
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: content_type}
        if self.product or "vnd.elasticsearch" in accept:
            headers["X-Elastic-Product"] = self.product or "Elasticsearch"
        return web.Response(body=json.dumps(body).encode(), status=status, headers=headers)

    async def search(self, request: web.Request, target: str | None) -> web.StreamResponse:
        """One ``_search``: plan it, pass it through, or fetch the window and rerank it."""
        raw = await request.read()
        is_json, body = json_body(request, raw)
        if not is_json:
            return await self.stream(request, raw)
        try:
            plan = plan_search(target, dict(request.query), body, self.config)
        except ConfigError as exc:
            return self.error(request, str(exc))
        if isinstance(plan, Skip):
            self.stats.count("skipped", plan.reason)
            extra = {STATUS_HEADER: "skipped", "X-Erank-Reason": plan.reason}
            if not plan.stripped:
                return await self.stream(request, raw, extra=extra)
            return await self.stream(request, dumps(plan.body), rewritten=True, extra=extra)
        try:
            upstream = await self.fetch(request, plan.params, dumps(plan.body), body_type(request))
        except ClientError as exc:
            return self.error(request, f"upstream unreachable: {exc}", 502, "connect_exception")
        if not is_search_response(upstream.json):
            return self.reply(request, upstream, None)  # an error: the engine's own
        done = self.metrics.finished(
            await finish_async(plan, upstream.json, self.reranker, self.stats, upstream.millis)
        )
        body = plan.trim(done.body, elasticsearch=ELASTIC_PRODUCT in upstream.headers)
        return self.reply(request, upstream, body, done.headers(upstream.millis))

    async def msearch(self, request: web.Request, target: str | None) -> web.StreamResponse:
        """One ``_msearch``: every item planned and reranked on its own, one engine call."""
        raw = await request.read()
        try:
            data = decode_body(request, raw)
        except UNDECODABLE:
            data = None
        pairs = parse_ndjson(data) if data is not None else None
        if pairs is None:
            return await self.stream(request, raw)
        items = plan_items(target, pairs, self.config)
        untouched = all(isinstance(i.plan, Skip) and not i.plan.stripped for i in items)
        if untouched:
            for item in items:
                self.stats.count("skipped", item.plan.reason)  # type: ignore[union-attr]
            return await self.stream(request, raw, extra={STATUS_HEADER: "skipped"})
        lines = forward_pairs(items)
        content_type = body_type(request, ndjson=True)
        if not lines:
            only_errors = {"took": 0, "responses": place_responses(items, [])}
            return web.json_response(only_errors, headers={STATUS_HEADER: "skipped"})
        params = {k: v for k, v in request.query.items() if k != "filter_path"}
        try:
            upstream = await self.fetch(request, params, ndjson(lines), content_type)
        except ClientError as exc:
            return self.error(request, f"upstream unreachable: {exc}", 502, "connect_exception")
        responses = upstream.json.get("responses") if isinstance(upstream.json, dict) else None
        if not isinstance(responses, list):
            return self.reply(request, upstream, None)
        sent = [i for i in items if not isinstance(i.plan, ConfigError)]
        finished, outcome = await self._finish_items(sent, responses, upstream.millis)
        body = {**upstream.json, "responses": place_responses(items, finished)}
        if "filter_path" in request.query:  # read whole to rerank; filtered as the engine would
            trim = FilterPath.parse(request.query["filter_path"])
            body = trim.apply(body, elasticsearch=ELASTIC_PRODUCT in upstream.headers)
        return self.reply(
            request, upstream, body, outcome_headers(outcome, Timings(upstream.millis))
        )

    async def _finish_items(
        self, sent: Sequence[Item], responses: Sequence[Any], first_stage_ms: float
    ) -> tuple[list[Any], Outcome]:
        """Rerank the items that asked for it, concurrently; the batch's overall outcome."""

        async def finish(item: Item, response: Any) -> tuple[Any, Outcome]:
            if isinstance(item.plan, SearchPlan) and is_search_response(response):
                done = self.metrics.finished(
                    await finish_async(
                        item.plan, response, self.reranker, self.stats, first_stage_ms
                    )
                )
                return done.body, done.outcome
            if isinstance(item.plan, Skip):
                self.stats.count("skipped", item.plan.reason)
            return response, "skipped"

        done = await asyncio.gather(*(finish(i, r) for i, r in zip(sent, responses, strict=False)))
        outcomes = {o for _, o in done}
        overall: Outcome = next(
            (o for o in ("failed-open", "reranked") if o in outcomes), "skipped"
        )
        return [b for b, _ in done], overall

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route: searches to the reranking paths, the stats page, the rest straight through."""
        found = route(request.method, request.path)
        if found is not None:
            kind, target = found
            if kind == "search":
                return await self.search(request, target)
            return await self.msearch(request, target)
        if request.method == hdrs.METH_GET and request.path == STATS_PATH:
            return web.json_response(self.stats.as_json())
        return await self.stream(request)


def make_app(proxy: Proxy) -> web.Application:
    """The aiohttp application: one catch-all route; closes the pool and client on cleanup."""
    app = web.Application(middlewares=[proxy.metrics.middleware], client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    instrument(app)  # span, request id (answered in X-Request-Id, never sent to the engine)

    async def _close(_: web.Application) -> None:
        await proxy.close()

    app.on_cleanup.append(_close)
    return app


@dataclass
class RunningProxy:
    """A started proxy: ``url`` to point clients at, ``proxy`` for its counters."""

    url: str
    proxy: Proxy


@contextlib.asynccontextmanager
async def running_proxy(
    upstream: str,
    reranker: str | Sequence[str],
    config: ProxyConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> AsyncIterator[RunningProxy]:
    """Serve a proxy on ``host:port`` (0: any free port) until the block exits; with
    ``metrics_port``, its Prometheus ``/metrics`` on ``metrics_host`` (default loopback)."""
    proxy = Proxy(upstream, reranker, config or ProxyConfig())
    app = make_app(proxy)
    proxy.metrics.serve_with(app, metrics_host, metrics_port)
    # auto_decompress off: a compressed request body is forwarded as the client sent it
    runner = web.AppRunner(app, access_log=None, auto_decompress=False, logger=SERVER_LOG)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningProxy(f"http://{bound_host}:{bound_port}", proxy)
    finally:
        await runner.cleanup()


def run(
    upstream: str,
    reranker: str | Sequence[str],
    listen: str = "127.0.0.1:9201",
    config: ProxyConfig | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (what ``erank proxy`` does)."""
    host, _, port = listen.rpartition(":")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_proxy(
            upstream, reranker, config, host or "127.0.0.1", int(port), metrics_port, metrics_host
        ) as p:
            log.info("erank proxy on %s -> %s (scoring server %s)", p.url, upstream, reranker)
            await stop.wait()

    asyncio.run(serve())
