"""The request/response rewriting that the query proxy (:mod:`connector.proxy`) and the client
wrappers (:mod:`connector.wrappers`) share, free of I/O: per-index config (``config``), which
searches to rerank and how to rewrite them (``search``, ``msearch``), hits to documents and back
with the window and page cut (``hits``), the scoring call's outcome and fail-open (``failopen``),
and ``filter_path`` applied after reranking (``filterpath``). See docs/PROXY.md."""
