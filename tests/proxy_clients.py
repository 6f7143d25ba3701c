"""The corpus and the official-client adapter shared by the proxy and wrapper tests and
bench/proxy_latency.py: one way to index the same documents into any pinned engine and to call
it with its own official asyncio client (``elasticsearch`` for Elasticsearch, ``opensearch-py``
for OpenSearch), directly or through the proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch
from engines import RunningEngine
from opensearchpy import AsyncOpenSearch, OpenSearch, TransportError

from connector.proxy.config import IndexConfig, ProxyConfig

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
    """Create ``docs`` and ``docs-off`` (one shard each) with :data:`DOCS`, refreshed."""
    for index in ("docs", OFF):
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


def proxy_config(log_interval_s: float = 10.0, budget_ms: int = 120_000) -> ProxyConfig:
    """Window :data:`WINDOW` on ``text``; :data:`OFF` turned off; a budget the tiny model on a
    busy CPU always meets."""
    return ProxyConfig(
        default=IndexConfig(fields=("text",), window=WINDOW, budget_ms=budget_ms),
        indices={OFF: IndexConfig(enabled=False)},
        log_interval_s=log_interval_s,
    )


class Es8Http:
    """What elasticsearch-py 8.x sends, for Elasticsearch 8 servers: the 9.x client in our
    environment asks for ``compatible-with=9``, which 8.x refuses, and the 8.x client
    (``elasticsearch8``) needs elastic-transport < 9, which cannot share an environment with
    the 9.x client. Same headers, same product check, same gzip both ways."""

    MEDIA = "application/vnd.elasticsearch+json; compatible-with=8"
    NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"

    def __init__(self, url: str, compress: bool) -> None:
        self.url, self.compress = url, compress
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Accept": self.MEDIA}
        data: bytes | None = None
        if body is not None:
            lines = body if isinstance(body, list) else [body]
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            if not isinstance(body, list):
                data = data.rstrip(b"\n")
            headers["Content-Type"] = self.NDJSON if isinstance(body, list) else self.MEDIA
            if self.compress:
                data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
        headers["Accept-Encoding"] = "gzip" if self.compress else "identity"
        async with self.session.request(
            method, self.url + path, data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            hdrs = {k.lower(): v for k, v in response.headers.items()}
            if 200 <= response.status < 300 and hdrs.get("x-elastic-product") != "Elasticsearch":
                raise AssertionError(f"product check failed: {hdrs}")  # what 8.x raises on
            return response.status, hdrs, json.loads(raw) if raw else None


class EngineClient:
    """The engine's official asyncio client at ``url`` (see :class:`Es8Http` for 8.x), plus a
    plain aiohttp session for the response headers that opensearch-py does not expose."""

    def __init__(self, kind: str, version: str, url: str, compress: bool) -> None:
        self.kind, self.version, self.url = kind, version, url
        self.client: Any = None
        self.es8 = Es8Http(url, compress) if kind == "elasticsearch" and version[0] == "8" else None
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

    async def _es8(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        assert self.es8 is not None
        status, headers, answer = await self.es8.call(method, path, body, params or None)
        if status >= 300:
            raise AssertionError(f"{method} {path} -> {status}: {answer}")
        return answer, headers

    async def search(self, index: str | None, body: dict[str, Any], **params: Any) -> Any:
        if self.es8 is not None:
            return (await self.search_with_headers(index, body, **params))[0]
        return self._body(await self.client.search(index=index, body=body, **params))

    async def search_with_headers(
        self, index: str | None, body: dict[str, Any], **params: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The client's answer and the HTTP headers (lower-case names) of the response."""
        path = f"/{index}/_search" if index else "/_search"
        if self.es8 is not None:
            answer, headers = await self._es8("POST", path, body, **params)
            return answer, headers
        if self.kind == "elasticsearch":
            found = await self.client.search(index=index, body=body, **params)
            return dict(found.body), {k.lower(): v for k, v in found.meta.headers.items()}
        result = self._body(await self.client.search(index=index, body=body, **params))
        async with self.http.post(
            self.url + path, json=body, params=params, headers={"Accept-Encoding": "gzip"}
        ) as raw:
            await raw.read()
            return result, {k.lower(): v for k, v in raw.headers.items()}

    async def blocking_search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The same search with the client's blocking flavour (urllib3 for elasticsearch-py),
        run in a thread so the event loop (and the scoring server on it) keeps running."""
        if self.es8 is not None:
            return dict(await self.search(index, body))  # no 8.x client here: see Es8Http
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
            status, _, answer = await self.es8.call("POST", f"/{index}/_search", body)
            return status, answer
        try:
            await self.client.search(index=index, body=body)
        except ApiError as exc:
            return exc.meta.status, exc.body
        except TransportError as exc:
            return int(exc.status_code), exc.info
        raise AssertionError("the search did not fail")

    async def msearch(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        if self.es8 is not None:
            return dict((await self._es8("POST", "/_msearch", lines))[0])
        return self._body(await self.client.msearch(body=lines))

    async def open_pit(self, index: str) -> str:
        if self.es8 is not None:
            answer, _ = await self._es8("POST", f"/{index}/_pit", keep_alive="1m")
            return str(answer["id"])
        if self.kind == "elasticsearch":
            answer = await self.client.open_point_in_time(index=index, keep_alive="1m")
            return str(answer["id"])
        answer = await self.client.create_pit(index=index, params={"keep_alive": "1m"})
        return str(answer["pit_id"])

    async def count(self, index: str) -> int:
        if self.es8 is not None:
            return int((await self._es8("GET", f"/{index}/_count"))[0]["count"])
        return int((await self.client.count(index=index))["count"])

    async def exists(self, index: str) -> bool:
        if self.es8 is not None:
            assert self.es8 is not None
            status, _, _ = await self.es8.call("HEAD", f"/{index}")
            return status == 200
        return bool(await self.client.indices.exists(index=index))

    async def get(self, index: str, doc_id: str) -> dict[str, Any]:
        if self.es8 is not None:
            return dict((await self._es8("GET", f"/{index}/_doc/{doc_id}"))[0])
        return self._body(await self.client.get(index=index, id=doc_id))
