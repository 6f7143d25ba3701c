"""The search engine as the workbench sees it: indices with their text and vector fields (from
the mappings), and searches, over one pooled aiohttp session.

Elasticsearch and OpenSearch answer ``GET /_mapping`` alike; hidden indices (a leading dot) are
left out. A field path is dotted through ``properties`` (and multi-field ``fields``), as both
engines name it in queries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

TEXT_TYPES = frozenset({"text", "match_only_text"})
VECTOR_TYPES = frozenset({"knn_vector", "dense_vector"})
DEFAULT_ENGINE_TIMEOUT_S = 60.0
# an index name: none of the characters neither engine allows in one (nor a search path may hold)
INDEX_NAME = r'^[^\\/*?"<>| ,#:]+$'


class EngineFailure(Exception):
    """The engine could not be reached or refused a request: ``status`` and its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class IndexFields:
    """One index and the fields the workbench can search and rerank on."""

    name: str
    text_fields: tuple[str, ...]
    vector_fields: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "text_fields": list(self.text_fields),
            "vector_fields": list(self.vector_fields),
        }


def _walk(properties: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted path, type)`` of every field under ``properties``, multi-fields included."""
    found: list[tuple[str, str]] = []
    for name, spec in properties.items():
        if not isinstance(spec, Mapping):
            continue
        path = f"{prefix}{name}"
        if isinstance(spec.get("type"), str):
            found.append((path, spec["type"]))
        for key in ("properties", "fields"):
            if isinstance(spec.get(key), Mapping):
                found += _walk(spec[key], f"{path}.")
    return found


def index_fields(mappings: Mapping[str, Any]) -> list[IndexFields]:
    """The indices of a ``GET /_mapping`` answer, by name, hidden ones left out."""
    out = []
    for name in sorted(mappings):
        if name.startswith("."):
            continue
        properties = (mappings[name].get("mappings") or {}).get("properties") or {}
        fields = _walk(properties)
        out.append(
            IndexFields(
                name,
                tuple(p for p, t in fields if t in TEXT_TYPES),
                tuple(p for p, t in fields if t in VECTOR_TYPES),
            )
        )
    return out


class Engine:
    """An engine at ``url``; :meth:`open` on the serving loop, :meth:`close` with it."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_ENGINE_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self._session is not None, "Engine.open() first"
        try:
            async with self._session.request(method, self.url + path, json=body) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise EngineFailure(502, f"engine at {self.url}: {type(err).__name__}: {err}") from err
        if response.status >= 400:
            error = data.get("error") if isinstance(data, Mapping) else None
            reason = error.get("reason") if isinstance(error, Mapping) else error
            raise EngineFailure(response.status, f"engine: {reason or response.reason}")
        return data

    async def indices(self) -> list[IndexFields]:
        return index_fields(await self._call("GET", "/_mapping"))

    async def search(self, index: str, body: Any) -> tuple[dict[str, Any], float]:
        """The engine's answer to ``body`` on ``index`` and the milliseconds it took."""
        began = time.perf_counter()
        answer = await self._call("POST", f"/{quote(index, safe='')}/_search", body)
        return answer, (time.perf_counter() - began) * 1000
