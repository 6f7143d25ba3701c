"""A port the scoring server cannot have: refused at start with one line naming it.

Real gRPC servers and a real `erank serve` process; the port is bound before any model loads, so
no checkpoint is needed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from erank.listen import PortUnavailable, check_port
from erank.server import ScoringServer
from erank.settings import load_settings

ERANK = Path(sys.prefix) / "bin" / "erank"


async def test_a_second_server_on_a_held_port_is_refused() -> None:
    """gRPC's SO_REUSEPORT would let a second server share the first one's port (two servers
    answering one address): the second is refused instead."""
    first = ScoringServer(load_settings(model="unused", port=0))
    await first.server.start()
    try:
        with pytest.raises(PortUnavailable, match=rf"cannot listen on 127\.0\.0\.1:{first.port}: "):
            ScoringServer(load_settings(model="unused", port=first.port))
    finally:
        await first.server.stop(0)


def test_the_check_takes_the_hosts_grpc_takes() -> None:
    """IPv6 in gRPC's bracketed form and "localhost" are checked, not refused as unknown."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortUnavailable, match="in use"):
            check_port("localhost", port)
    check_port("[::]", port)  # free again
    with pytest.raises(PortUnavailable, match="unknown host"):
        check_port("no-such-host.invalid", port)


def test_serve_on_a_port_another_program_holds_says_so_in_one_line() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        run = subprocess.run(
            [str(ERANK), "serve", "--model", "unused", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "╭" not in output, output
    assert run.stderr.strip().splitlines() == [
        f"erank serve: cannot listen on 127.0.0.1:{port}: the port is in use (another erank "
        "serve or another program holds it); stop it or choose another --port"
    ]
