"""The contract between the scoring server and its adapters: what both sides import.

``v1/`` holds the stubs of ``proto/erank/v1/reranker.proto`` (``scripts/gen-stubs``) and
``client.py`` the one gRPC client. The package needs only grpcio and protobuf, so a connector-only
install (``pip install erank-search[connector]``) gets it without torch, vLLM or numpy; the server
(``erank/``) and every adapter (``connector/``, ``opensearch_plugin/``) depend on it, never on
each other.
"""
