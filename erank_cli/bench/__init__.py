"""``erank bench``: load generators that measure the scoring server and the proxy.

``server`` (erank_cli/bench/server.py) drives a scoring server over gRPC and, in the same run, the
raw vLLM engine on prompts of the same shape (each pass its own); ``budget``
(erank_cli/bench/budget.py) measures deadline-aware scoring against its budgets; ``proxy``
(erank_cli/bench/proxy.py) times searches through the query proxy against the engine directly
and the proxy's own work in isolation. Results are a table, JSON and a PNG plot
(erank_cli/bench/report.py).
"""
