"""The reranking query proxy (``erank proxy``) and the request/response rewriting it shares
with the client wrappers (:mod:`connector.wrappers`). See docs/PROXY.md."""

from connector.proxy.config import ConfigError, IndexConfig, ProxyConfig, load_config
from connector.proxy.search import SearchPlan, Skip, plan_search

__all__ = [
    "ConfigError",
    "IndexConfig",
    "ProxyConfig",
    "SearchPlan",
    "Skip",
    "load_config",
    "plan_search",
]
