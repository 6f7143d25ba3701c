"""Pinned engine versions, Maven coordinates and defaults shared by the whole package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, TypeAlias

EngineKind: TypeAlias = Literal["opensearch", "elasticsearch"]
SettingValue: TypeAlias = str | int | float | bool | list[str]

# Versions whose integ-test-zip Maven Central serves here, checked 2026-11-23 with
# `mvn dependency:get -Dartifact=<G>:<A>:<V>:zip` (the integ-test-zip's maven-metadata.xml lists
# only some releases, so each candidate was asked for directly, newest first, against the
# version list of the core artifacts org.opensearch:opensearch / org.elasticsearch:elasticsearch):
# - OpenSearch: 2.19.7 (newest 2.19 core release) has no integ-test-zip, 2.19.6 has; 3.9.0 (newest
#   3.x core release) has none, 3.8.0 has.
# - Elasticsearch: 9.5.3 is the newest 9.x core release and has one; 8.19.21 is the newest 8.x
#   release and has one.
# Oldest first; [-1] is the newest.
OPENSEARCH_VERSIONS: tuple[str, ...] = ("2.19.6", "3.8.0")
ELASTICSEARCH_VERSIONS: tuple[str, ...] = ("8.19.21", "9.5.3")
ALL_ENGINES: tuple[tuple[EngineKind, str], ...] = (
    *(("opensearch", v) for v in OPENSEARCH_VERSIONS),
    *(("elasticsearch", v) for v in ELASTICSEARCH_VERSIONS),
)

MAVEN_GROUPS: Mapping[EngineKind, str] = MappingProxyType(
    {
        "opensearch": "org.opensearch.distribution.integ-test-zip:opensearch",
        "elasticsearch": "org.elasticsearch.distribution.integ-test-zip:elasticsearch",
    }
)
OPENSEARCH_PLUGIN_GROUP = "org.opensearch.plugin"
# Pinned so the `-Dartifact` form of dependency:copy works whatever Maven's default binds.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 180.0
MAVEN_TIMEOUT = 1800.0

_NO_SETTINGS: Mapping[str, SettingValue] = MappingProxyType({})
_NO_SECRETS: Mapping[str, str] = MappingProxyType({})
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:\.\d+)?(?:-[A-Za-z0-9.]+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JAVA_VERSION_RE = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)


class EngineError(RuntimeError):
    """An engine could not be fetched, configured, started or talked to."""


class _PortTaken(EngineError):
    """The engine could not bind a port chosen for it (another process took it first)."""


class EngineHTTPError(EngineError):
    """The engine answered an HTTP request with an error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])
