"""Two real scoring servers (`erank serve` subprocesses, real vLLM CPU engine) with small
admission limits: load on one, then both behind one client address list.

- Load: N clients for a bounded time against one server: every call is OK or
  RESOURCE_EXHAUSTED with a retry hint, refused at once (not after its deadline), and the
  server's memory does not grow.
- Scale-out: a burst through ``AsyncRerankerClient([a, b])`` (gRPC ``round_robin``) is scored by
  both servers; one killed with SIGKILL mid-burst costs no call (gRPC retries UNAVAILABLE on the
  other). The two servers start at the same time (one engine start is tens of seconds).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from test_operations_process import descendants, erank_serve, free_port, wait_gone, wait_serving

from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

# Small admission limits; no score cache: every call's documents are new, and a cache filling up
# to its byte bound (256 MiB) would read as growth of the server's memory.
LIMITS = {
    "max_inflight_requests": "4",
    "max_queued_documents": "12",
    "shutdown_drain_s": "0",
    "score_cache_entries": "0",
}
LOAD_CLIENTS = 8
LOAD_S = float(os.environ.get("ERANK_LOAD_S", "10"))
# Measured 2026-12-07 on the 2-core machine, 8 clients for 100 s (13,266 calls): our server process
# 943 -> 948 MiB; vLLM's worker 2,019 -> 2,145 MiB in the first 10 s (warm-up), then slowing to
# 2,219 MiB at 90 s. So the server alone is held tight, the whole family loosely.
SERVER_RSS_GROWTH_LIMIT_MB = 32.0
RSS_GROWTH_LIMIT_MB = 160.0


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def scored(self) -> float:
        """Documents this server has scored (its ``erank_documents_scored_total``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("erank_documents_scored_total{")
        )


@pytest_asyncio.fixture(scope="module")
async def servers(random_checkpoint: Path) -> AsyncIterator[list[Server]]:
    """Two servers with small admission limits, started at the same time."""
    with contextlib.ExitStack() as stack:
        started = []
        for _ in range(2):
            port, metrics_port = free_port(), free_port()
            settings = LIMITS | {"metrics_port": str(metrics_port)}
            proc = stack.enter_context(erank_serve(random_checkpoint, port, **settings))
            started.append(Server(proc, port, metrics_port))
        began = time.monotonic()
        await asyncio.gather(*(wait_serving(s.proc, s.port) for s in started))
        print(f"\ntwo servers SERVING {time.monotonic() - began:.1f} s after their start")
        yield started


def request(documents: int) -> pb.RerankRequest:
    """Documents no earlier call scored, in one engine step each (score_only)."""
    tag = uuid.uuid4().hex
    docs = [pb.Document(id=str(i), text=f"{tag} text {i}") for i in range(documents)]
    return pb.RerankRequest(query="q", documents=docs, mode=pb.SCORING_MODE_SCORE_ONLY)


def rss_mb(pid: int, engine: bool = True) -> float:
    """Resident memory of ``pid`` (with ``engine``: and its descendants, the engine processes),
    MiB."""
    total = 0
    for p in [pid, *(descendants(pid) if engine else ())]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def _load_client(
    address: str, until: float, outcomes: list[tuple[str, float]], refusals: list[object]
) -> None:
    async with AsyncRerankerClient(address, timeout=30) as client:
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                await client.rerank(request(5))
                outcomes.append(("OK", time.monotonic() - start))
            except grpc.aio.AioRpcError as err:
                outcomes.append((err.code().name, time.monotonic() - start))
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refusals.append(err)
                    await asyncio.sleep(0.02)


async def test_load_is_served_or_refused_at_once_with_stable_memory(servers: list[Server]) -> None:
    server = servers[0]
    pid = server.proc.pid
    outcomes: list[tuple[str, float]] = []
    refusals: list[object] = []
    samples: list[float] = []
    own: list[float] = []  # the server process alone
    until = time.monotonic() + LOAD_S
    clients = asyncio.gather(
        *(_load_client(server.address, until, outcomes, refusals) for _ in range(LOAD_CLIENTS))
    )
    while not clients.done():
        samples.append(await asyncio.to_thread(rss_mb, pid))
        own.append(await asyncio.to_thread(rss_mb, pid, False))
        await asyncio.wait([clients], timeout=0.25)
    await clients
    counts = collections.Counter(code for code, _ in outcomes)
    third = max(1, len(samples) // 3)
    first, last = sum(samples[:third]) / third, sum(samples[-third:]) / third
    own_first, own_last = sum(own[:third]) / third, sum(own[-third:]) / third
    slowest_refusal = max((t for code, t in outcomes if code != "OK"), default=0.0)
    print(
        f"\nload: {LOAD_CLIENTS} clients x {LOAD_S:g} s: {len(outcomes)} calls {dict(counts)}; "
        f"slowest refusal {slowest_refusal * 1000:.0f} ms; RSS (server + engine) first third "
        f"{first:.0f} MiB, last third {last:.0f} MiB; the server process alone {own_first:.0f} -> "
        f"{own_last:.0f} MiB"
    )
    assert set(counts) <= {"OK", "RESOURCE_EXHAUSTED"}, counts
    assert counts["OK"] > 0 and counts["RESOURCE_EXHAUSTED"] > 0, counts
    assert slowest_refusal < 1.0  # refused at once, not after the call's deadline (30 s)
    status = rpc_status.from_call(refusals[0])
    retry = error_details_pb2.RetryInfo()
    assert status is not None and status.details[0].Unpack(retry)
    assert retry.retry_delay.ToTimedelta().total_seconds() > 0
    assert own_last - own_first < SERVER_RSS_GROWTH_LIMIT_MB
    assert last - first < RSS_GROWTH_LIMIT_MB


async def _burst(client: AsyncRerankerClient, calls: int, workers: int) -> list[str]:
    """``calls`` two-document calls by ``workers`` callers (within both servers' limits)."""
    todo = iter(range(calls))
    codes: list[str] = []

    async def worker() -> None:
        for _ in todo:
            try:
                await client.rerank(request(2))
                codes.append("OK")
            except grpc.aio.AioRpcError as err:
                codes.append(err.code().name)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return codes


async def test_burst_spreads_over_both_and_survives_a_kill(servers: list[Server]) -> None:
    a, b = servers
    before = [a.scored(), b.scored()]
    async with AsyncRerankerClient([a.address, b.address], timeout=60) as client:
        spread = await _burst(client, 40, 4)
        per_server = [a.scored() - before[0], b.scored() - before[1]]
        named = descendants(b.proc.pid)
        for engine_process in ("VLLM::EngineCor", "VLLM::Worker"):
            assert any(n.startswith(engine_process) for n in named.values()), named
        family = set(named)
        killing = asyncio.ensure_future(_burst(client, 60, 4))
        while (
            await asyncio.to_thread(b.scored) - before[1] - per_server[1] < 10
        ):  # b is busy with this burst
            await asyncio.sleep(0.05)
        b.proc.kill()
        killed_at = time.monotonic()
        codes = await killing
        after_kill = time.monotonic() - killed_at
    print(
        f"\nspread: 40 calls x 2 documents scored {per_server[0]:.0f} / {per_server[1]:.0f} by "
        f"the two servers; kill -9 of one mid-burst: {collections.Counter(codes)}, the burst "
        f"ended {after_kill:.1f} s after the kill"
    )
    assert spread == ["OK"] * 40
    assert per_server[0] >= 10 and per_server[1] >= 10 and sum(per_server) == 80
    assert codes == ["OK"] * 60
    assert await asyncio.to_thread(wait_gone, family, 15) == set()
