"""Which searches get reranked, their query text, and the request sent to the engine instead.

Shared by the HTTP proxy and the client wrappers: they hand over the index expression, the URL
parameters and the parsed body, and get back a :class:`SearchPlan` (rerank: forward ``body`` and
``params``, then finish with :mod:`connector.rewrite.hits`), a :class:`Skip` (forward the search as
it is, less ``ext.erank``), or a :class:`ConfigError` (answer HTTP 400).

``filter_path`` does not stop a rerank: the engine is asked for its whole answer and the
reranked one is filtered as the engine would have (:mod:`connector.rewrite.filterpath`).

Rank window apart from the page: a search for ``from``/``size`` with ``from < window`` is sent
as ``from=0, size=max(window, from + size)``, so every page of a query is cut from one reranked
order (no overlap, no skip across pages). Pages wholly past the window are the engine's own.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from connector.rewrite.config import ConfigError, IndexConfig, ProxyConfig, parse_overrides
from connector.rewrite.filterpath import FilterPath
from connector.rewrite.textfields import is_true, text_fields

DEFAULT_SIZE = 10
SEARCH_PATH = re.compile(r"^/(?:(?P<target>[^/]+)/)?_search/?$")
MSEARCH_PATH = re.compile(r"^/(?:(?P<target>[^/]+)/)?_msearch/?$")
# Body keys whose presence makes the engine rank by something else than its `_score` order, or
# page by cursor: such searches pass through untouched. First stages (`knn`, a `retriever`, a
# `rank` section, OpenSearch's `hybrid` query) are reranked: their final `_score` is the first
# stage.
_PASS_KEYS = {
    "pit": "pit",
    "search_after": "search_after",
    "rescore": "rescore",
    "slice": "scroll",
}
_PASS_PARAMS = {"scroll": "scroll", "sort": "sort", "source": "source_param",
                "search_after": "search_after"}  # fmt: skip
# URL parameters the proxy applies itself after reranking instead of the engine.
NOT_FORWARDED = ("from", "size", "filter_path")
_TEXT_QUERIES = (
    "match",
    "match_phrase",
    "match_phrase_prefix",
    "match_bool_prefix",
)
_QUERY_KEY_QUERIES = ("multi_match", "query_string", "simple_query_string", "combined_fields")
# Vector queries: no words the user typed (their `filter` restricts, it is not the question).
_VECTOR_QUERIES = ("knn", "neural", "neural_sparse", "sparse_vector", "semantic", "text_expansion")
# Elasticsearch compound retrievers whose final hits number at most `rank_window_size`.
_WINDOWED_RETRIEVERS = ("rrf", "linear", "text_similarity_reranker", "rule", "pinned")
_DEFAULT_RANK_WINDOW = 10  # Elasticsearch's rank_window_size when a retriever names none
JAVA_INT_MAX = 2**31 - 1  # both engines read from, size and window sizes as Java ints
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")


@dataclass(frozen=True)
class Skip:
    """Forward the search unchanged (but for ``ext.erank``): ``reason`` says why."""

    reason: str
    body: dict[str, Any] | None
    stripped: bool = False  # whether ``body`` differs from the request's (ext.erank removed)


@dataclass(frozen=True)
class SearchPlan:
    """A search to rerank: what to send the engine and how to cut the user's page after."""

    body: dict[str, Any]
    params: dict[str, str]
    query_text: str
    page_from: int
    page_size: int
    config: IndexConfig
    added_fields: tuple[str, ...] = field(default=())  # asked for by us, stripped from hits
    filter_path: FilterPath | None = None  # the search's own, applied to the reranked answer

    @property
    def window(self) -> int:
        return self.config.window

    def trim(self, answer: dict[str, Any], elasticsearch: bool) -> dict[str, Any]:
        """The finished answer as the engine would have filtered it (``filter_path``)."""
        return self.filter_path.apply(answer, elasticsearch) if self.filter_path else answer


def route(method: str, path: str) -> tuple[Literal["search", "msearch"], str | None] | None:
    """``("search" | "msearch", index expression or None)`` for a request the proxy may
    rerank; None for everything else (which passes through)."""
    if method.upper() not in ("GET", "POST"):
        return None
    path = path.split("?", 1)[0]
    if found := SEARCH_PATH.match(path):
        return "search", unquote(found["target"]) if found["target"] else None
    if found := MSEARCH_PATH.match(path):
        return "msearch", unquote(found["target"]) if found["target"] else None
    return None


def str_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """URL parameters as the engine reads them (clients pass bools, numbers and lists)."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, bytes):
            out[key] = value.decode()
        elif value is not None:
            out[key] = str(value)
    return out


def _int(value: object, default: int) -> int | None:
    """An integer ``from``/``size`` (URL strings included); None when it is not one."""
    if value is None:
        return default
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # past Python's digit limit: no engine reads it as a number either
            return None
    return None


def _is_score_desc(sort: object) -> bool:
    """Whether a ``sort`` is just ``_score`` descending (any of its spellings)."""
    if isinstance(sort, list):
        return len(sort) == 1 and _is_score_desc(sort[0])
    if sort == "_score":
        return True
    if isinstance(sort, dict) and list(sort) == ["_score"]:
        order = sort["_score"]
        if isinstance(order, dict):
            order = order.get("order", "desc") if set(order) <= {"order"} else None
        return order in ("desc", "DESC")
    return False


def _clauses(value: object) -> Iterator[object]:
    if isinstance(value, list):
        yield from value
    elif value is not None:
        yield value


def query_texts(query: object) -> Iterator[str]:
    """The texts of the full-text clauses in a query, through compound queries.

    Filters, ``must_not`` and term-level queries say what to exclude or restrict, not what the
    user is looking for, so they are ignored.
    """
    if not isinstance(query, dict):
        return
    for kind, spec in query.items():
        if kind in _TEXT_QUERIES and isinstance(spec, dict):
            for value in spec.values():
                text = value.get("query") if isinstance(value, dict) else value
                if isinstance(text, (str, int, float)) and not isinstance(text, bool):
                    yield str(text)
        elif kind in _QUERY_KEY_QUERIES and isinstance(spec, dict):
            if isinstance(spec.get("query"), str):
                yield spec["query"]
        elif kind == "bool" and isinstance(spec, dict):
            for part in ("must", "should"):
                for clause in _clauses(spec.get(part)):
                    yield from query_texts(clause)
        elif kind == "dis_max" and isinstance(spec, dict):
            for clause in _clauses(spec.get("queries")):
                yield from query_texts(clause)
        elif kind == "hybrid" and isinstance(spec, dict):
            # the first sub-query with words: the others are usually the same question as vectors
            for clause in _clauses(spec.get("queries")):
                texts = list(query_texts(clause))
                if any(t.strip() for t in texts):
                    yield from texts
                    break
        elif kind in _VECTOR_QUERIES:
            continue
        elif isinstance(spec, dict):  # boosting, constant_score, function_score, nested, ...
            for inner in ("positive", "query", "filter"):
                yield from query_texts(spec.get(inner))


def retriever_texts(retriever: object) -> Iterator[str]:
    """The texts of an Elasticsearch ``retriever``: its lexical ``standard`` retrievers' queries,
    through ``rrf``/``linear`` (and retrievers wrapping one); ``knn`` retrievers have none."""
    if not isinstance(retriever, dict):
        return
    for kind, spec in retriever.items():
        if not isinstance(spec, dict):
            continue
        if kind == "standard":
            yield from query_texts(spec.get("query"))
        elif kind in ("rrf", "linear"):
            if isinstance(spec.get("query"), str):  # the multi-field shorthand: query + fields
                yield spec["query"]
            for inner in _clauses(spec.get("retrievers")):
                # rrf lists retrievers; linear lists {"retriever": ..., "weight": ...}
                if isinstance(inner, dict) and isinstance(inner.get("retriever"), dict):
                    inner = inner["retriever"]
                yield from retriever_texts(inner)
        elif kind != "knn":
            yield from retriever_texts(spec.get("retriever"))


def query_text(body: Mapping[str, Any], params: Mapping[str, str]) -> str | None:
    """Distinct texts of the query (``q=`` URL parameter first), joined by a space: the
    ``query``, the lexical part of a ``retriever`` and of a ``rank`` section's ``sub_searches``
    (a top-level ``knn`` adds none)."""
    texts = [params["q"]] if params.get("q") else []
    texts += query_texts(body.get("query"))
    texts += retriever_texts(body.get("retriever"))
    for sub in _clauses(body.get("sub_searches")):
        if isinstance(sub, dict):
            texts += query_texts(sub.get("query"))
    distinct = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    return " ".join(distinct) or None


def skip_reason(body: Mapping[str, Any], params: Mapping[str, str]) -> str | None:
    """Why a search must pass through untouched, or None if it can be reranked."""
    for key, reason in _PASS_PARAMS.items():
        if key in params:
            return reason
    if "sort" in body and not _is_score_desc(body["sort"]):
        return "sort"
    for key, reason in _PASS_KEYS.items():
        if key in body:
            return reason
    if _reranks_itself(body.get("retriever")):
        return "text_similarity_reranker"
    return None


def _reranks_itself(retriever: object) -> bool:
    """Whether an Elasticsearch retriever holds a ``text_similarity_reranker``: the engine
    already reranks (possibly with ERank through its inference endpoint), so not again."""
    if not isinstance(retriever, dict):
        return False
    for kind, spec in retriever.items():
        if kind == "text_similarity_reranker":
            return True
        if isinstance(spec, dict):
            inner = [spec.get("retriever"), *_clauses(spec.get("retrievers"))]
            for item in inner:
                if isinstance(item, dict) and isinstance(item.get("retriever"), dict):
                    item = item["retriever"]  # linear's {"retriever": ..., "weight": ...}
                if _reranks_itself(item):
                    return True
    return False


def strip_ext(body: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, object, bool]:
    """``(body without ext.erank, the ext.erank value, whether there was one)``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("ext"), Mapping):
        return (dict(body) if isinstance(body, Mapping) else None), None, False
    ext = dict(body["ext"])
    if "erank" not in ext:
        return dict(body), None, False
    value = ext.pop("erank")
    rest = {k: v for k, v in body.items() if k != "ext"}
    if ext:
        rest["ext"] = ext
    return rest, value, True


def plan_search(
    target: str | None,
    params: Mapping[str, str],
    body: Mapping[str, Any] | None,
    config: ProxyConfig,
) -> SearchPlan | Skip:
    """Decide what to do with one search on ``target`` (the path's index expression or None).

    Raises :class:`ConfigError` for a bad ``ext.erank``: the caller answers HTTP 400.
    """
    if body is not None and not isinstance(body, Mapping):
        return Skip("not_an_object", None)  # a JSON array or scalar: the engine's error applies
    clean, ext_value, had_ext = strip_ext(body)
    overrides = parse_overrides(ext_value) if had_ext else None
    base = config.for_target(target)
    if base is None:
        return Skip("mixed_index_config", clean, had_ext)
    settings = overrides.apply(base) if overrides else base
    if is_true(params.get("explain", "false")) or (body or {}).get("explain") is True:
        # the engine explains its BM25 score, the scoring server its own: reasoning per hit
        settings = settings.model_copy(update={"explain": True})
    if not settings.enabled:
        return Skip("disabled", clean, had_ext)
    source: dict[str, Any] = clean or {}
    reason = skip_reason(source, params)
    if reason:
        return Skip(reason, clean, had_ext)
    page_from = _int(params.get("from", source.get("from")), 0)
    page_size = _int(params.get("size", source.get("size")), DEFAULT_SIZE)
    if page_from is None or page_size is None or page_from < 0 or page_size < 0:
        return Skip("bad_from_size", clean, had_ext)  # the engine answers with its own error
    if page_size == 0:
        return Skip("size_zero", clean, had_ext)
    if page_from >= settings.window:
        return Skip("past_window", clean, had_ext)
    if page_from + page_size > JAVA_INT_MAX:  # the size forwarded would overflow the engine's
        raise ConfigError(f"[from] + [size] must be at most {JAVA_INT_MAX}")
    text = (overrides.query_text if overrides else None) or query_text(source, params)
    if text is None:
        return Skip("no_query_text", clean, had_ext)
    forward = copy.deepcopy(source)
    forward["from"] = 0
    forward["size"] = max(settings.window, page_from + page_size)
    _widen_rank_window(forward, max(settings.window, page_from + page_size))
    asked, added = text_fields(forward, params, settings.fields)
    if asked:
        forward["fields"] = [*(forward.get("fields") or []), *asked]
    return SearchPlan(
        body=forward,
        params={k: v for k, v in params.items() if k not in NOT_FORWARDED},
        query_text=text,
        page_from=page_from,
        page_size=page_size,
        config=settings,
        added_fields=added,
        filter_path=FilterPath.parse(params["filter_path"]) if "filter_path" in params else None,
    )


def _widen_rank_window(body: dict[str, Any], size: int) -> None:
    """Let a compound retriever or ``rank`` section return the ``size`` hits asked for.

    Elasticsearch refuses a ``size`` over their ``rank_window_size`` (default 10), and returns
    no hit past it. The forwarded size is the rank window (or the page's end past it), so the
    window the engine fuses over is the same for every page inside the rank window: pages tile.
    """
    retriever = body.get("retriever")
    if isinstance(retriever, dict) and len(retriever) == 1:
        ((kind, spec),) = retriever.items()
        if kind in _WINDOWED_RETRIEVERS and isinstance(spec, dict):
            own = _int(spec.get("rank_window_size"), _DEFAULT_RANK_WINDOW) or 0
            if own < size:
                body["retriever"] = {kind: {**spec, "rank_window_size": size}}
    rank = body.get("rank")
    if isinstance(rank, dict):
        for method, spec in rank.items():
            if isinstance(spec, dict):
                key = "window_size" if "window_size" in spec else "rank_window_size"
                own = _int(spec.get(key), _DEFAULT_RANK_WINDOW) or 0
                if own < size:
                    rank[method] = {**spec, key: size}


def error_json(reason: str, status: int = 400) -> dict[str, Any]:
    """An error body in the engines' own shape, so their clients raise their usual errors."""
    cause = {"type": "illegal_argument_exception", "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


__all__ = [
    "NOT_FORWARDED",
    "ConfigError",
    "SearchPlan",
    "Skip",
    "error_json",
    "plan_search",
    "query_text",
    "query_texts",
    "retriever_texts",
    "route",
    "skip_reason",
    "str_params",
    "strip_ext",
]
