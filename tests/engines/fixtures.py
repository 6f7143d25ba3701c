"""pytest fixtures yielding running engines, one engine or parametrized over several."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

from .maven import fetch_plugin
from .process import RunningEngine
from .start import start_engine
from .versions import _NO_SETTINGS, ALL_ENGINES, EngineError, EngineKind, SettingValue


def _resolve_plugins(kind: EngineKind, version: str, plugins: Sequence[str | Path]) -> list[Path]:
    resolved: list[Path] = []
    for plugin in plugins:
        if isinstance(plugin, Path):
            resolved.append(plugin)
        elif kind == "opensearch":
            resolved.append(fetch_plugin(plugin, version))
        else:
            raise EngineError(f"Elasticsearch plugin {plugin!r}: pass the zip's Path")
    return resolved


def engine_fixture(
    kind: EngineKind,
    version: str,
    *,
    plugins: Sequence[str | Path] = (),
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    scope: Literal["session", "package", "module", "class", "function"] = "session",
    name: str | None = None,
) -> Callable[..., Any]:
    """A pytest fixture yielding a :class:`RunningEngine`, for a conftest::

        from engines import OPENSEARCH_VERSIONS, engine_fixture

        opensearch = engine_fixture("opensearch", OPENSEARCH_VERSIONS[-1])
        opensearch_ml = engine_fixture(
            "opensearch", "3.8.0", plugins=["opensearch-job-scheduler", "opensearch-ml-plugin"]
        )

    ``plugins``: OpenSearch plugin artifactIds (fetched in the engine's version at setup, so
    collection stays offline) or zip Paths. Fetching and starting happen at fixture setup; a
    failure there fails the tests (never skips).
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _engine() -> Iterator[RunningEngine]:
        zips = _resolve_plugins(kind, version, plugins)
        with start_engine(kind, version, plugins=zips, settings=settings) as engine:
            yield engine

    return _engine


class EnginePool:
    """Plain engines (no plugins, default settings) shared by every module of a test session.

    A JVM start costs 10-30 s on the CI machine and six modules ask for the same four plain
    engines; each engine is started on first use and stopped when the session ends. Modules keep
    their indices apart by name and create them afresh (an index another module left behind is
    deleted first), so sharing an engine changes no test's view of it.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._running: dict[tuple[EngineKind, str], RunningEngine] = {}

    def get(self, kind: EngineKind, version: str) -> RunningEngine:
        """The running plain engine of ``kind`` and ``version``, started if none is."""
        engine = self._running.get((kind, version))
        if engine is None or engine.process.poll() is not None:
            engine = self._stack.enter_context(start_engine(kind, version))
            self._running[(kind, version)] = engine
        return engine

    def close(self) -> None:
        self._stack.close()
        self._running.clear()


def engine_pool_fixture() -> Callable[..., Any]:
    """The session fixture ``engine_pool`` (an :class:`EnginePool`), for the conftest."""
    import pytest

    @pytest.fixture(scope="session", name="engine_pool")
    def _pool() -> Iterator[EnginePool]:
        pool = EnginePool()
        try:
            yield pool
        finally:
            pool.close()

    return _pool


def engines_fixture(
    engines: Sequence[tuple[EngineKind, str]] = ALL_ENGINES,
    *,
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    scope: Literal["session", "package", "module", "class", "function"] = "session",
    name: str | None = None,
) -> Callable[..., Any]:
    """A fixture parametrized over ``engines`` (ids like ``opensearch-3.8.0``): every test that
    uses it runs once per engine. Without ``settings`` the engines come from the session's
    ``engine_pool`` (started once, shared with other modules); with them, each is started for the
    fixture and stopped after it."""
    import pytest

    @pytest.fixture(
        scope=scope,
        name=name,
        params=list(engines),
        ids=[f"{kind}-{version}" for kind, version in engines],
    )
    def _engine(request: Any) -> Iterator[RunningEngine]:
        kind, version = request.param
        if not settings:
            yield request.getfixturevalue("engine_pool").get(kind, version)
            return
        with start_engine(kind, version, settings=settings) as engine:
            yield engine

    return _engine
