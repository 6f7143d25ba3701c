"""The reranking query proxy (``erank proxy``): an aiohttp server in front of Elasticsearch or
OpenSearch (``app``, ``http``) that rewrites searches with :mod:`connector.rewrite`, the code it
shares with the client wrappers. The config names are re-exported here, where a user of the
proxy or the wrappers looks for them. See docs/PROXY.md."""

from connector.rewrite.config import ConfigError, IndexConfig, ProxyConfig, load_config
from connector.rewrite.search import SearchPlan, Skip, plan_search

__all__ = [
    "ConfigError",
    "IndexConfig",
    "ProxyConfig",
    "SearchPlan",
    "Skip",
    "load_config",
    "plan_search",
]
