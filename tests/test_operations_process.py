"""How `erank serve` ends, with real kills: a subprocess on loopback, the real vLLM CPU engine.

- its engine core or model worker killed: health NOT_SERVING, calls UNAVAILABLE, exit status 1;
- itself killed with SIGKILL: no engine process outlives it (tests/test_scale_out.py, mid-burst);
- SIGTERM (or Ctrl-C, SIGINT to its process group) in the middle of a burst: NOT_SERVING while
  still serving, no call CANCELLED, the engine untouched by the signal until the calls are done.

Each test starts its own server (tens of seconds) because each one ends it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2

from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> dict[int, str]:
    """Live descendants of ``pid`` (from /proc): pid -> command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            name, _, rest = text[text.index("(") + 1 :].rpartition(")")
            child, ppid = int(stat.parent.name), int(rest.split()[1])
            children.setdefault(ppid, []).append(child)
            names[child] = name
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found[p] = names[p]
        todo += children.get(p, [])
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                running.add(pid)
    return running


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Waits up to ``timeout`` for ``pids`` to end; returns those still running."""
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


_OUTPUT: dict[int, IO[str]] = {}


def output_of(proc: subprocess.Popen[str]) -> str:
    """What ``proc`` (started by :func:`erank_serve`) wrote to stdout and stderr so far."""
    file = _OUTPUT[proc.pid]
    file.seek(0)
    return file.read()


@contextlib.contextmanager
def erank_serve(
    model: Path, port: int, max_new_tokens: int = 64, **settings: str
) -> Iterator[subprocess.Popen[str]]:
    """`erank serve` on ``port`` with ``ERANK_*`` settings; killed (group and all) on exit.
    Its output goes to a file (:func:`output_of`), never to a pipe nobody reads while the test
    runs: one log line per call would fill a pipe's 64 KiB and stall the server."""
    env = os.environ.copy() | {f"ERANK_{k.upper()}": v for k, v in settings.items()}
    command = [sys.executable, "-m", "erank_cli", "serve", f"--model={model}", f"--port={port}"]
    command += ["--dtype=float32", "--enforce-eager", f"--max-new-tokens={max_new_tokens}"]
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(  # a session of its own, like a server started from a terminal
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        _OUTPUT[proc.pid] = output
        try:
            yield proc
        finally:
            family = set(descendants(proc.pid))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in alive(family):  # only if a test failed: never leave engines behind
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            del _OUTPUT[proc.pid]


def health(port: int, timeout: float = 2) -> int | str:
    """The server's health status, or the gRPC code name when it does not answer."""
    try:
        with RerankerClient(f"127.0.0.1:{port}") as client:
            return client.health("", timeout=timeout)
    except grpc.RpcError as err:
        return str(err.code().name)


async def wait_serving(proc: subprocess.Popen[str], port: int) -> None:
    for _ in range(600):
        if await asyncio.to_thread(health, port) == SERVING:
            return
        assert proc.poll() is None, output_of(proc)
        await asyncio.sleep(0.5)
    raise AssertionError("the server never said SERVING")


async def poll_health(port: int, until: asyncio.Event) -> list[tuple[float, int | str]]:
    """(time, status) every 0.1 s until ``until`` is set."""
    seen: list[tuple[float, int | str]] = []
    while not until.is_set():
        seen.append((time.monotonic(), await asyncio.to_thread(health, port)))
        await asyncio.sleep(0.1)
    return seen


def fresh_docs(n: int) -> list[pb.Document]:
    tag = uuid.uuid4().hex
    return [pb.Document(id=f"{i}", text=f"text {tag} number {i}") for i in range(n)]


@pytest.mark.parametrize("victim", ["VLLM::EngineCor", "VLLM::Worker"])  # as /proc's comm
async def test_engine_killed_goes_not_serving_and_exits_nonzero(
    random_checkpoint: Path, victim: str
) -> None:
    """The engine core or its model worker (the biggest process: the OOM killer's pick)."""
    port = free_port()
    with erank_serve(random_checkpoint, port, shutdown_drain_s="2") as proc:
        await wait_serving(proc, port)
        family = descendants(proc.pid)
        (pid,) = [pid for pid, name in family.items() if name.startswith(victim)]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        exited = asyncio.Event()
        poller = asyncio.ensure_future(poll_health(port, exited))
        async with AsyncRerankerClient(f"127.0.0.1:{port}", timeout=30) as client:
            await asyncio.sleep(0.5)
            with pytest.raises(grpc.aio.AioRpcError) as call:
                await client.rerank(pb.RerankRequest(query="q", documents=fresh_docs(2)))
        code = await asyncio.to_thread(proc.wait, 60)
        exited.set()
        seen = await poller
        output = output_of(proc)
    first_not_serving = next(t for t, s in seen if s == NOT_SERVING)
    print(f"NOT_SERVING {first_not_serving - killed:.2f} s after the kill; exit {code}")
    assert call.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "the scoring engine died" in (call.value.details() or "")
    assert SERVING not in [s for t, s in seen if t > first_not_serving]
    assert first_not_serving - killed < 3.0
    assert code == 1, output
    assert "erank serve: the scoring engine died" in output
    assert wait_gone(set(family), 15) == set()


def sigterm(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)


def ctrl_c(proc: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)


@pytest.mark.parametrize("stop", [sigterm, ctrl_c])
async def test_stop_signal_mid_burst_drains_without_cancelling(
    random_checkpoint: Path, stop: Callable[[subprocess.Popen[str]], None]
) -> None:
    port = free_port()
    settings = {"shutdown_drain_s": "2", "shutdown_grace_s": "120"}
    with erank_serve(random_checkpoint, port, **settings) as proc:
        await wait_serving(proc, port)
        stopped = asyncio.Event()
        poller = asyncio.ensure_future(poll_health(port, stopped))
        async with AsyncRerankerClient(f"127.0.0.1:{port}", timeout=300) as client:

            async def call(n: int) -> tuple[float, grpc.StatusCode]:
                request = pb.RerankRequest(query="q", documents=fresh_docs(n))
                try:
                    await client.rerank(request)
                except grpc.aio.AioRpcError as err:
                    return time.monotonic(), err.code()
                return time.monotonic(), grpc.StatusCode.OK

            burst = [asyncio.ensure_future(call(150)) for _ in range(6)]
            await asyncio.sleep(1.0)
            stop(proc)
            signalled = time.monotonic()
            late: list[tuple[float, asyncio.Future[tuple[float, grpc.StatusCode]]]] = []
            while proc.poll() is None and time.monotonic() - signalled < 240:
                late.append((time.monotonic(), asyncio.ensure_future(call(1))))
                await asyncio.sleep(0.2)
            outcomes = await asyncio.gather(*burst)
            late_outcomes = [(sent, *(await f)) for sent, f in late]
        stopped.set()
        seen = await poller
        code = proc.wait()
    first_not_serving = next(t for t, s in seen if s == NOT_SERVING)
    port_closed = next(t for t, s in seen if t > first_not_serving and s == "UNAVAILABLE")
    # The probe keeps calling until the process exits; a call that reaches gRPC in the instant it
    # stops (after drain and grace, when clients have long been told NOT_SERVING) can end
    # CANCELLED in gRPC's core. Every call sent before the port started closing must not.
    codes = [c for _, c in outcomes] + [
        c for sent, _, c in late_outcomes if sent < port_closed - 0.5
    ]
    print(
        f"NOT_SERVING {first_not_serving - signalled:.2f} s after {stop.__name__}, for "
        f"{port_closed - first_not_serving:.2f} s before the port closed; burst done "
        f"{max(t for t, _ in outcomes) - signalled:.2f} s after it; "
        f"calls sent after it: {collections.Counter(c.name for _, _, c in late_outcomes)}"
    )
    assert grpc.StatusCode.CANCELLED not in codes
    assert [c for _, c in outcomes] == [grpc.StatusCode.OK] * 6
    assert port_closed - first_not_serving > 1.5  # drain: 2 s
    # calls sent while NOT_SERVING was showing were still served
    assert any(
        first_not_serving < sent < port_closed - 0.5 and c == grpc.StatusCode.OK
        for sent, _, c in late_outcomes
    )
    assert code == 0
