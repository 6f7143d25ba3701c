"""Starting an engine: a fresh instance on free loopback ports, up when its cluster health is
yellow or green."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path

from .instance import _prepare_instance, _run_as
from .java import find_java
from .maven import fetch
from .process import _RUNNING, _RUNNING_LOCK, RunningEngine, _terminate, http_request
from .versions import (
    _NO_SECRETS,
    _NO_SETTINGS,
    DEFAULT_HEAP,
    DEFAULT_START_TIMEOUT,
    EngineError,
    EngineKind,
    SettingValue,
    _PortTaken,
)


def _wait_healthy(engine: RunningEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    health = f"{engine.url}/_cluster/health?wait_for_status=yellow&timeout=5s"
    last_error = "no answer yet"
    while True:
        code = engine.process.poll()
        if code is not None:
            raise EngineError(
                f"{engine.kind} {engine.version} exited with {code} while starting"
                f" (Java {engine.java_home}):\n{engine.logs_tail()}"
            )
        if time.monotonic() > deadline:
            raise EngineError(
                f"{engine.kind} {engine.version} not healthy after {timeout:.0f} s"
                f" ({last_error}; Java {engine.java_home}):\n{engine.logs_tail()}"
            )
        try:
            answer = http_request("GET", health, timeout=15, expect_error=True)
        except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
            continue
        healthy = isinstance(answer, dict) and answer.get("status") in {"yellow", "green"}
        if healthy and not answer.get("timed_out"):
            return
        last_error = f"health: {str(answer)[:300]}"
        time.sleep(0.5)


def start_engine(
    kind: EngineKind,
    version: str,
    *,
    plugins: Sequence[Path] = (),
    settings: Mapping[str, SettingValue] = _NO_SETTINGS,
    heap: str = DEFAULT_HEAP,
    timeout: float = DEFAULT_START_TIMEOUT,
    java_home: Path | None = None,
    keystore: Mapping[str, str] = _NO_SECRETS,
) -> RunningEngine:
    """Start a fresh single-node ``kind`` ``version`` on free loopback ports and wait until
        ``/_cluster/health`` is yellow or green.

        ``plugins``: zips to install first (see :func:`fetch_plugin`). ``settings``: extra
        ``opensearch.yml``/``elasticsearch.yml`` entries, overriding the defaults (single-node,
        loopback, Elasticsearch security off). ``keystore``: secure settings added to the node's
    keystore before it starts. ``java_home`` overrides :func:`find_java`. Raises
        :class:`EngineError` with the tail of the engine's log when it does not come up.
    """
    source = fetch(kind, version)
    java = Path(java_home) if java_home is not None else find_java(kind, version)
    run_as = _run_as()
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(
                kind, version, source, java, run_as, plugins, settings, heap, timeout, keystore
            )
        except _PortTaken:
            if attempt == attempts:
                raise EngineError(f"{kind} {version}: ports taken {attempts} times") from None
    raise AssertionError("unreachable")


def _launch(
    kind: EngineKind,
    home: Path,
    env: dict[str, str],
    run_as: tuple[int, int] | None,
    console_log: Path,
) -> subprocess.Popen[bytes]:
    """``bin/<kind>`` in its own process group, as ``run_as`` when given, output to the log."""
    with open(console_log, "wb") as console:
        return subprocess.Popen(
            [str(home / "bin" / kind)],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=run_as[0] if run_as else None,
            group=run_as[1] if run_as else None,
            extra_groups=[] if run_as else None,
        )


def _start_once(
    kind: EngineKind,
    version: str,
    source: Path,
    java: Path,
    run_as: tuple[int, int] | None,
    plugins: Sequence[Path],
    settings: Mapping[str, SettingValue],
    heap: str,
    timeout: float,
    keystore: Mapping[str, str],
) -> RunningEngine:
    instance = Path(tempfile.mkdtemp(prefix=f"erank-{kind}-{version}-"))
    process: subprocess.Popen[bytes] | None = None
    engine: RunningEngine | None = None
    try:
        ready = _prepare_instance(
            kind, source, java, run_as, plugins, settings, heap, instance, keystore
        )
        console_log = instance / "logs" / "console.log"
        process = _launch(kind, ready.home, ready.env, run_as, console_log)
        engine = RunningEngine(
            kind=kind,
            version=version,
            url=f"http://127.0.0.1:{ready.http_port}",
            home=ready.home,
            java_home=ready.java,
            http_port=ready.http_port,
            transport_port=ready.transport_port,
            instance_dir=instance,
            process=process,
            console_log=console_log,
        )
        with _RUNNING_LOCK:
            _RUNNING.add(engine)
        _wait_healthy(engine, timeout)
        return engine
    except BaseException as exc:
        log = ""
        if engine is not None:
            log = engine.logs_tail(400)
            engine.stop(timeout=20)
        elif process is not None:
            _terminate(process, 20)
        shutil.rmtree(instance, ignore_errors=True)
        if isinstance(exc, EngineError) and re.search(r"BindException|Address already in use", log):
            raise _PortTaken(str(exc)) from exc
        raise
