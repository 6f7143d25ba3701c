"""The scoring server's HTTP/JSON front (``erank rest``): Cohere v1 and v2, TEI, ``/health``.

Search engines and libraries that can call an HTTP reranker but not gRPC (ml-commons
connectors, Elasticsearch's ``custom`` inference service, our OpenSearch ``erank`` processor,
Cohere's and TEI's clients) reach the scoring server here. It is a translation layer only: JSON
in, ``erank.v1.RerankRequest`` out through the one gRPC client (:mod:`connector.client`), and
back. Limits, defaults and fusion all stay in the server.

``POST /v1/rerank`` (Cohere v1; ml-commons, Elasticsearch's ``custom`` service and the Java
processor's ``RerankCodec`` depend on it)::

    {"query": str, "documents": [str], "top_n"?: int, "return_documents"?: bool,   # Cohere
     "instruction"?: str, "instruction_preset"?: str,                               # ERank
     "first_stage_scores"?: [float], "alpha"?: float,
     "fusion"?: "zscore" | "minmax" | "rrf", "rank_constant"?: int,
     "long_documents"?: "truncate" | "best_passage", "passage_overlap"?: int,
     "return_reasoning"?: bool,
     "budget_ms"?: int, "on_budget"?: "cut" | "fail_open", "finish_in_background"?: bool}

``model`` and any other unknown key is ignored (ml-commons and Cohere clients send one).

``budget_ms`` (1..300000; default the front's ``--timeout``) is the call's budget, counted from
when the front has the request: the gRPC deadline is what remains of it, and with ``on_budget:
cut`` (the default) the scoring server is told that less the front's measured overhead and cuts
reasoning short to answer in time (:mod:`connector.budget`); ``on_budget: fail_open`` is all or
nothing (a 504 past the budget, for the caller to fail open); ``finish_in_background: true``
(``cut`` only) lets cut documents finish afterwards into the server's score cache.

Response ``200``: ``{"model", "fused", "fusion"?, "results": [...], "usage", "completions",
"notice"?}``
(``fusion``: the method, when fused), one result per document (the best ``top_n`` with
``top_n``), best first; each result has ``index``, ``relevance_score`` (= ``hybrid_score`` when
fused, else ``rank_score``), ``rank_score``, ``answer``, ``answer_probability``, ``status``
(``ok``, ``no_answer``, ``truncated_input``, ``unscored``), ``completion`` (``full``, ``cut``:
its reasoning closed at the deadline, ``unscored``: no answer by then) and ``thinking_tokens``,
``hybrid_score`` and ``first_stage_score`` when there are any, ``document`` with
``return_documents``, ``reasoning`` (the model's text before its answer) with
``return_reasoning``, ``passage`` (``index``, ``start_char``, ``end_char``, ``count``: the
passage whose score the document took) with ``long_documents: best_passage``.
``completions`` is ``{"full", "cut", "unscored", "cached", "deadline_ms", "closing_margin_ms"}``:
documents per completion, those from the score cache, the deadline the server worked to (ms from
its receipt; 0: none, as with ``fail_open``) and how long before it the server began closing
reasoning.
Scores are always JSON floats (``0.0``, never ``0``): ml-commons' Cohere post-process function
casts ``relevance_score`` to ``Double`` and fails on an integer.

``POST /v2/rerank`` (Cohere v2, :mod:`connector.rest.cohere`): the same, without
``return_documents``, with ``max_tokens_per_doc`` (the truncation length), plus ``id`` and
``meta``. ``POST /rerank`` (TEI, :mod:`connector.rest.tei`): ``{"query", "texts"}`` →
``[{"index", "score", "text"?}]`` (the budget fields are taken; TEI's bare list has no room for
``completions``).

Errors (:mod:`connector.rest.errors`): ``{"error": {"type", "reason", "violations"?: [{"field",
"description"}]}, "status"}`` with 400 (bad request; each violation names the field and the
limit), 401 (a token is configured and the request lacks it), 404/405 (no such route), 413 (body
too large), 503 (scoring server unavailable or loading), 504 (deadline exceeded), 429 (server
overloaded, with ``Retry-After`` seconds), 502 (other failures).
"""

from connector.rest.app import create_app, run, serving

__all__ = ["create_app", "run", "serving"]
