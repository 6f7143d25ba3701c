"""``erank elasticsearch install``: ERank as an Elasticsearch ``rerank`` inference endpoint.

Elasticsearch (8.19+ / 9.1+, Enterprise or trial licence) calls an arbitrary HTTP reranker
through its ``custom`` inference service: it fills ``service_settings.request`` (``${query}``,
``${input}`` and every ``task_settings.parameters`` value, each as JSON), POSTs it to
``service_settings.url``, and reads the JSON paths ``response.json_parser.relevance_score`` and
``reranked_index`` of the answer. Our REST front's ``POST /v1/rerank`` is that reranker; the
template is ``resources/elasticsearch-rerank-endpoint.v1.json``. When the endpoint is created,
Elasticsearch makes one validation call (query ``"test query"``, input ``["how big"]``), which
the REST front answers like any other.

With a token (the REST front's bearer token), it goes into ``service_settings.secret_parameters``
(Elasticsearch stores it encrypted and never shows it back) and the header
``Authorization: Bearer ${token}`` refers to it. Since a stored secret cannot be compared,
install with a token always replaces the endpoint (so a changed token takes effect).

The endpoint is then used by the ``text_similarity_reranker`` retriever (see
:func:`retriever_example`) or ES|QL ``RERANK``. Plain HTTP through ``httpx`` rather than
elasticsearch-py: one client major works only with one server major, this works with 8.x and 9.x.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from opensearch_plugin.options import format_time_value
from opensearch_plugin.templates import render

_COMPARED_SERVICE_SETTINGS = ("url", "headers", "request", "response")


class ElasticsearchError(RuntimeError):
    """Elasticsearch refused a call; the message has its status and error body."""


def connect(
    url: str, verify_certs: bool = True, api_key: str | None = None, timeout: float = 120.0
) -> httpx.Client:
    """A client for the cluster at ``url`` (``https://user:pass@host:9200`` for basic auth, or
    ``api_key`` for an ``ApiKey`` header). The timeout covers the validation call."""
    headers = {"Authorization": f"ApiKey {api_key}"} if api_key else {}
    return httpx.Client(base_url=url, verify=verify_certs, headers=headers, timeout=timeout)


def endpoint_body(
    endpoint: str, instruction: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """The ``PUT _inference/rerank/<id>`` body for the REST front at ``endpoint``."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer ${token}"  # Elasticsearch's substitution, not ours
    values = {
        "rerank_url": endpoint.rstrip("/") + "/v1/rerank",
        "instruction": instruction or "",
        "headers": headers,
        "secret_parameters": {"token": token} if token else None,
    }
    return dict(render("elasticsearch-rerank-endpoint", values))


def retriever_example(
    inference_id: str, field: str, query: str = "how do rerankers work", window: int = 50
) -> dict[str, Any]:
    """A search body reranking the BM25 top ``window`` on ``field`` through the endpoint."""
    values = {"inference_id": inference_id, "field": field, "query": query, "window": window}
    return dict(render("elasticsearch-retriever-example", values))


def install(
    client: httpx.Client,
    endpoint: str,
    inference_id: str = "erank",
    instruction: str | None = None,
    timeout_ms: int = 30_000,
    token: str | None = None,
) -> dict[str, Any]:
    """Create the endpoint; unchanged if it already exists with the same settings (and no
    token is given), replaced (deleted and created again) otherwise."""
    body = endpoint_body(endpoint, instruction, token)
    path = f"/_inference/rerank/{inference_id}"
    action: Literal["created", "updated", "unchanged"] = "created"
    existing = client.get(path)
    if existing.status_code == 200:
        if token is None and _same(existing.json()["endpoints"][0], body):
            return {"action": "unchanged", "inference_id": inference_id}
        _check(client.delete(path), "DELETE", path)
        action = "updated"
    elif existing.status_code != 404:
        _check(existing, "GET", path)
    created = client.put(path, params={"timeout": format_time_value(timeout_ms)}, json=body)
    _check(created, "PUT", path)
    return {"action": action, "inference_id": inference_id, "endpoint": created.json()}


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    settings = current.get("service_settings", {})
    return (
        current.get("service") == wanted["service"]
        and all(
            settings.get(k) == wanted["service_settings"][k] for k in _COMPARED_SERVICE_SETTINGS
        )
        and current.get("task_settings", {}) == wanted["task_settings"]
    )


def _check(response: httpx.Response, method: str, path: str) -> None:
    if response.is_error:
        raise ElasticsearchError(
            f"{method} {path} -> HTTP {response.status_code}: {_refusal(response)}"
        )


def _refusal(response: httpx.Response) -> str:
    """The cluster's own reason, on one line: ``type: reason`` of an Elasticsearch error object,
    the plain ``error`` string of a cluster without the API ("no handler found for uri"), or the
    body itself when it is neither."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("reason"):
        reason = f"{error.get('type', 'error')}: {error['reason']}"
    elif isinstance(error, str):
        reason = error
    else:
        reason = response.text
    return " ".join(reason.split())[:2000]
