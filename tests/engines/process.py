"""A started engine (:class:`RunningEngine`), its HTTP calls, and stopping its process group,
at the latest when the interpreter exits."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .versions import EngineHTTPError, EngineKind, _tail

_RUNNING: set[RunningEngine] = set()
_RUNNING_LOCK = threading.Lock()


@dataclass(eq=False)
class RunningEngine:
    """A started engine. ``stop()`` (or leaving the ``with`` block) ends it and deletes its
    instance directory."""

    kind: EngineKind
    version: str
    url: str
    home: Path
    java_home: Path
    http_port: int
    transport_port: int
    instance_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    console_log: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.instance_dir / "logs"

    def logs_tail(self, lines: int = 80) -> str:
        """The last ``lines`` of the console output and of the server log."""
        parts = []
        # <cluster.name>.log; not gc.log, nor *_deprecation.log, *_slowlog.log and such
        server_logs = [
            p
            for p in sorted(self.log_dir.glob("*.log"))
            if "_" not in p.name and p.name not in {"gc.log", self.console_log.name}
        ]
        for path in [self.console_log, *server_logs]:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name} (last {lines} lines) ---\n{_tail(text, lines)}")
        return "\n".join(parts) or "(no log written)"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 60.0,
        expect_error: bool = False,
    ) -> Any:
        """One HTTP call; returns the decoded JSON answer (or text). ``body``: a dict/list is
        sent as JSON, a list of dicts to ``_bulk``/``_msearch`` paths as NDJSON, str/bytes as is.
        Raises :class:`EngineHTTPError` on an error status unless ``expect_error``."""
        return http_request(
            method, self.url + path, body, timeout=timeout, expect_error=expect_error
        )

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the server's process group, wait up to ``timeout`` s, then SIGKILL; remove
        the instance directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _terminate(self.process, timeout)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            shutil.rmtree(self.instance_dir, ignore_errors=True)

    def __enter__(self) -> RunningEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    def signal_group(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # start_new_session: group id == pid

    if process.poll() is None:
        signal_group(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(signal.SIGKILL)
            process.wait(30)
    # Elasticsearch's launcher runs the server as a child; make sure nothing outlives us.
    signal_group(signal.SIGKILL)


def _stop_all() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for engine in running:
        with contextlib.suppress(Exception):
            engine.stop(timeout=20)


atexit.register(_stop_all)


def http_request(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 60.0,
    expect_error: bool = False,
) -> Any:
    """Standard-library HTTP with JSON/NDJSON bodies; see :meth:`RunningEngine.request`."""
    data: bytes | None
    content_type = "application/json"
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    elif isinstance(body, list) and re.search(r"/_(bulk|msearch)\b", url):
        data = "".join(json.dumps(line) + "\n" for line in body).encode()
        content_type = "application/x-ndjson"
    else:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method.upper())
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        if not expect_error:
            raise EngineHTTPError(method, url, exc.code, payload.decode(errors="replace")) from exc
    text = payload.decode(errors="replace")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text
