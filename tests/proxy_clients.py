"""The corpus and the official-client adapter shared by the proxy and wrapper tests: one way to
index the same documents into any pinned engine and to call it with its own official asyncio
client (``elasticsearch`` for Elasticsearch, ``opensearch-py`` for OpenSearch), directly or
through the proxy.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch
from engines import RunningEngine
from es8_venv import es8_python
from opensearchpy import AsyncOpenSearch, OpenSearch, TransportError

from connector.rewrite.breaker import BreakerConfig
from connector.rewrite.config import IndexConfig, ProxyConfig, ScoringServerConfig

ES8_SCRIPT = Path(__file__).with_name("es8_client.py")
WINDOW = 12
OFF = "docs-off"  # same documents, reranking turned off in the proxy config
_FILLER = ["lazy", "dog", "rabbit", "grass", "search", "rank", "engine", "river", "stone"]


def _text(i: int) -> str:
    words = ["quick"] if i % 2 == 0 else []
    words += ["fox"] if i % 3 == 0 else []
    words += [_FILLER[(i * 7 + k) % len(_FILLER)] for k in range(i % 5 + 1)]
    words += ["brown"] if i % 4 == 1 else []
    return " ".join(words)


DOCS: dict[str, dict[str, Any]] = {
    f"d{i:02d}": {"text": _text(i), "title": f"doc {i}", "n": i, "tag": ["even", "odd"][i % 2]}
    for i in range(40)
}
# matched by a multi_match on title only: no `text` field at all
MISSING_TEXT = {f"t{i}" for i in range(5)}
DOCS.update(
    {
        d: {"title": "quick fox", "n": 100 + k, "tag": "odd"}
        for k, d in enumerate(sorted(MISSING_TEXT))
    }
)
CORPUS_SIZE = len(DOCS)
MAPPINGS = {
    "properties": {
        "text": {"type": "text", "analyzer": "standard"},
        "title": {"type": "text", "analyzer": "standard"},
        "n": {"type": "integer"},
        "tag": {"type": "keyword"},
    }
}


def index_corpus(engine: RunningEngine) -> None:
    """Create ``docs`` and ``docs-off`` (one shard each) with :data:`DOCS`, refreshed; what another
    module left under those names on a shared engine is deleted first."""
    for index in ("docs", OFF):
        engine.request("DELETE", f"/{index}", expect_error=True)
        engine.request(
            "PUT",
            f"/{index}",
            {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": MAPPINGS},
        )
        bulk: list[dict[str, Any]] = []
        for doc_id, doc in DOCS.items():
            bulk += [{"index": {"_index": index, "_id": doc_id}}, doc]
        answer = engine.request("POST", "/_bulk?refresh=true", bulk)
        assert answer["errors"] is False, answer


def proxy_config(
    log_interval_s: float = 10.0, budget_ms: int = 120_000, breaker: BreakerConfig | None = None
) -> ProxyConfig:
    """Window :data:`WINDOW` on ``text``; :data:`OFF` turned off; a budget the tiny model on a
    busy CPU always meets; the circuit breaker's defaults unless ``breaker`` is given."""
    return ProxyConfig(
        default=IndexConfig(fields=("text",), window=WINDOW, budget_ms=budget_ms),
        indices={OFF: IndexConfig(enabled=False)},
        log_interval_s=log_interval_s,
        scoring_server=ScoringServerConfig(breaker=breaker or BreakerConfig()),
    )


class Es8Client:
    """The official elasticsearch-py 8.x client (blocking, urllib3), for Elasticsearch 8
    servers: the 9.x client asks for ``compatible-with=9``, which 8.x refuses, and the 8.x
    client cannot share this environment with the 9.x one, so it runs in its own venv
    (:mod:`es8_venv`), in a subprocess (:mod:`es8_client`) that answers one call at a time."""

    def __init__(self, url: str, compress: bool) -> None:
        self.url, self.compress = url, compress
        self.process: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()

    async def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        """``{"status", "headers", "body"}``, or ``{"status", "error"}`` for an ``ApiError``."""
        async with self.lock:
            if self.process is None:
                python = await asyncio.to_thread(es8_python)
                self.process = await asyncio.create_subprocess_exec(
                    str(python), str(ES8_SCRIPT), self.url, "true" if self.compress else "false",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
            assert self.process.stdin is not None and self.process.stdout is not None
            line = json.dumps({"op": op, "kwargs": kwargs}) + "\n"
            self.process.stdin.write(line.encode())
            await self.process.stdin.drain()
            answer = await self.process.stdout.readline()
        if not answer:
            raise AssertionError(f"the 8.x client died during {op}({kwargs})")
        return dict(json.loads(answer))

    async def ok(self, op: str, **kwargs: Any) -> tuple[Any, dict[str, str]]:
        """The body and headers of a call that must succeed."""
        answer = await self.call(op, **kwargs)
        if "error" in answer:
            raise AssertionError(f"{op}({kwargs}) -> {answer['status']}: {answer['error']}")
        return answer["body"], answer["headers"]

    async def close(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            await self.process.wait()


class EngineClient:
    """The engine's official client at ``url`` (asyncio; for Elasticsearch 8 the 8.x client,
    see :class:`Es8Client`), plus a plain aiohttp session for the response headers that
    opensearch-py does not expose."""

    def __init__(self, kind: str, version: str, url: str, compress: bool) -> None:
        self.kind, self.version, self.url = kind, version, url
        self.client: Any = None
        es8 = kind == "elasticsearch" and version.startswith("8.")
        self.es8 = Es8Client(url, compress) if es8 else None
        if kind == "elasticsearch" and self.es8 is None:
            self.client = AsyncElasticsearch(url, http_compress=compress, request_timeout=300)
        elif kind == "opensearch":
            self.client = AsyncOpenSearch(hosts=[url], http_compress=compress, timeout=300)
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.es8 is not None:
            await self.es8.close()
        await self.http.close()

    @staticmethod
    def _body(answer: Any) -> dict[str, Any]:
        return dict(answer.body) if hasattr(answer, "body") else dict(answer)

    async def search(self, index: str | None, body: dict[str, Any] | None, **params: Any) -> Any:
        """The client's ``search`` (``body`` None: URL parameters only, e.g. ``q``)."""
        if self.es8 is not None:
            return dict((await self.es8.ok("search", index=index, body=body, **params))[0])
        return self._body(await self.client.search(index=index, body=body, **params))

    async def search_with_headers(
        self, index: str | None, body: dict[str, Any] | None, **params: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The client's answer and the HTTP headers (lower-case names) of the response."""
        if self.es8 is not None:
            answer, headers = await self.es8.ok("search", index=index, body=body, **params)
            return dict(answer), headers
        if self.kind == "elasticsearch":
            found = await self.client.search(index=index, body=body, **params)
            return dict(found.body), {k.lower(): v for k, v in found.meta.headers.items()}
        result = self._body(await self.client.search(index=index, body=body, **params))
        path = f"/{index}/_search" if index else "/_search"
        async with self.http.post(
            self.url + path, json=body, params=params, headers={"Accept-Encoding": "gzip"}
        ) as raw:
            await raw.read()
            return result, {k.lower(): v for k, v in raw.headers.items()}

    async def blocking_search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The same search with the client's blocking flavour (urllib3 for elasticsearch-py),
        run in a thread so the event loop (and the scoring server on it) keeps running."""
        if self.es8 is not None:
            return dict(await self.search(index, body))  # the 8.x client is the blocking one
        if self.kind == "elasticsearch":
            client: Any = Elasticsearch(self.url, http_compress=True, request_timeout=300)
        else:
            client = OpenSearch(hosts=[self.url], http_compress=True, timeout=300)
        try:
            return self._body(await asyncio.to_thread(client.search, index=index, body=body))
        finally:
            client.close()

    async def search_error(self, index: str, body: dict[str, Any]) -> tuple[int, Any]:
        """(HTTP status, error body) of a search the client must raise on."""
        if self.es8 is not None:
            answer = await self.es8.call("search", index=index, body=body)
            assert "error" in answer, "the search did not fail"
            return int(answer["status"]), answer["error"]
        try:
            await self.client.search(index=index, body=body)
        except ApiError as exc:
            return exc.meta.status, exc.body
        except TransportError as exc:
            return int(exc.status_code), exc.info
        raise AssertionError("the search did not fail")

    async def msearch(self, lines: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        if self.es8 is not None:
            return dict((await self.es8.ok("msearch", searches=lines, **params))[0])
        return self._body(await self.client.msearch(body=lines, **params))

    async def open_pit(self, index: str) -> str:
        if self.es8 is not None:
            answer, _ = await self.es8.ok("open_point_in_time", index=index, keep_alive="1m")
            return str(answer["id"])
        if self.kind == "elasticsearch":
            answer = await self.client.open_point_in_time(index=index, keep_alive="1m")
            return str(answer["id"])
        answer = await self.client.create_pit(index=index, params={"keep_alive": "1m"})
        return str(answer["pit_id"])

    async def count(self, index: str) -> int:
        if self.es8 is not None:
            return int((await self.es8.ok("count", index=index))[0]["count"])
        return int((await self.client.count(index=index))["count"])

    async def exists(self, index: str) -> bool:
        if self.es8 is not None:
            return bool((await self.es8.ok("indices.exists", index=index))[0])
        return bool(await self.client.indices.exists(index=index))

    async def get(self, index: str, doc_id: str) -> dict[str, Any]:
        if self.es8 is not None:
            return dict((await self.es8.ok("get", index=index, id=doc_id))[0])
        return self._body(await self.client.get(index=index, id=doc_id))
