"""Operating limits of a real scoring server (tiny random model, real vLLM CPU engine, loopback).

Admission refuses a burst at once with RESOURCE_EXHAUSTED and a retry hint; error messages stay
short whatever a caller sends; bytes that are not a request are INVALID_ARGUMENT, not UNKNOWN
with a traceback; message-size limits hold on both ends. Servers with small limits share the
session's engine (``running_server(settings, backend)``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from conftest import engine_settings
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from erank.server import ScoringServer, running_server
from erank.settings import load_settings
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine


def fresh_docs(n: int) -> list[pb.Document]:
    """Documents no earlier call scored (the score cache cannot answer them)."""
    tag = uuid.uuid4().hex
    return [pb.Document(id=f"{tag}-{i}", text=f"text {tag} number {i}") for i in range(n)]


@pytest_asyncio.fixture
async def small_server(tiny_server: ScoringServer) -> AsyncIterator[ScoringServer]:
    """Admission limits of 4 calls and 100 documents, on the session's engine."""
    settings = engine_settings(
        tiny_server.settings.model, max_inflight_requests=4, max_queued_documents=100
    )
    async with running_server(settings, tiny_server.backend) as server:
        yield server


async def _rerank(
    client: AsyncRerankerClient, documents: list[pb.Document], timeout: float = 60
) -> tuple[grpc.StatusCode, float, grpc.aio.AioRpcError | None]:
    """Status of one call and its duration."""
    start = time.monotonic()
    try:
        await client.rerank(pb.RerankRequest(query="q", documents=documents), timeout=timeout)
    except grpc.aio.AioRpcError as err:
        return err.code(), time.monotonic() - start, err
    return grpc.StatusCode.OK, time.monotonic() - start, None


async def test_burst_beyond_the_limit_is_refused_at_once(small_server: ScoringServer) -> None:
    async with AsyncRerankerClient(f"127.0.0.1:{small_server.port}") as client:
        outcomes = await asyncio.gather(*(_rerank(client, fresh_docs(20)) for _ in range(60)))
    ok = [t for code, t, _ in outcomes if code == grpc.StatusCode.OK]
    refused = [(t, err) for code, t, err in outcomes if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(ok) + len(refused) == 60, [code for code, _, _ in outcomes]
    assert len(ok) >= 4 and len(refused) >= 30
    slowest_refusal = max(t for t, _ in refused)
    print(
        f"60 calls: {len(ok)} scored (slowest {max(ok):.2f} s), {len(refused)} refused, "
        f"slowest refusal {slowest_refusal * 1000:.0f} ms"
    )
    assert slowest_refusal < min(1.0, max(ok))  # a refusal never waits for engine work
    _, err = refused[0]
    assert err is not None
    assert "max_inflight_requests" in err.details() and "the limit is 4" in err.details()
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.ToTimedelta().total_seconds() == pytest.approx(1.0)


async def test_queued_documents_limit_spares_a_lone_call(small_server: ScoringServer) -> None:
    backend = small_server.backend
    assert backend is not None
    async with AsyncRerankerClient(f"127.0.0.1:{small_server.port}") as client:
        first = asyncio.ensure_future(_rerank(client, fresh_docs(60)))
        while backend.running_requests() == 0:
            await asyncio.sleep(0.01)
        code, _, err = await _rerank(client, fresh_docs(60))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err is not None and "max_queued_documents" in err.details()
        assert "60 documents in flight and this call brings 60" in err.details()
        assert (await first)[0] == grpc.StatusCode.OK
        # 150 documents exceed the limit of 100, but a call alone is always admitted
        assert (await _rerank(client, fresh_docs(150)))[0] == grpc.StatusCode.OK


async def test_long_duplicated_id_gives_a_short_message(tiny_server: ScoringServer) -> None:
    long_id = "x" * 5000
    request = pb.RerankRequest(
        query="q", documents=[pb.Document(id=long_id, text="a"), pb.Document(id=long_id)]
    )
    async with AsyncRerankerClient(f"127.0.0.1:{tiny_server.port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.rerank(request)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        f"documents[1].id: duplicates documents[0].id {'x' * 64!r}… (5000 characters)"
    )


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("Rerank", b"\xff\xff\xff\xff"),  # wire format corrupt
        ("Rerank", b"\x0a\x02\xff\xfe"),  # query that is not UTF-8
        ("RerankStream", b"\x12\x03abc\x22"),  # truncated field
        ("GetModelInfo", b"\x0f"),
    ],
)
async def test_malformed_bytes_are_invalid_argument_without_traceback(
    tiny_server: ScoringServer, method: str, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tiny_server.port}") as channel:
        path = f"/erank.v1.Reranker/{method}"
        if method == "RerankStream":
            call = channel.unary_stream(path)(data, timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(path)(data, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request: does not decode: Error parsing message")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_message_size_limits_hold_on_both_ends(tiny_server: ScoringServer) -> None:
    big = pb.RerankRequest(query="q", documents=[pb.Document(id="a", text="x" * 100_000)])
    small = engine_settings(tiny_server.settings.model, max_message_bytes=64 * 1024)
    async with running_server(small, tiny_server.backend) as server:
        async with AsyncRerankerClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(grpc.aio.AioRpcError) as by_server:
                await client.rerank(big)
        async with AsyncRerankerClient(
            f"127.0.0.1:{server.port}", max_message_bytes=64 * 1024
        ) as client:
            with pytest.raises(grpc.aio.AioRpcError) as by_client:
                await client.rerank(big)
    assert by_server.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Received message larger than max" in (by_server.value.details() or "")
    assert by_client.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Sent message larger than max" in (by_client.value.details() or "")


def test_operation_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.max_inflight_requests, s.max_queued_documents, s.retry_after_s) == (64, 4000, 1.0)
    assert (s.shutdown_drain_s, s.shutdown_grace_s) == (5.0, 15.0)
    monkeypatch.setenv("ERANK_MAX_INFLIGHT_REQUESTS", "8")
    monkeypatch.setenv("ERANK_SHUTDOWN_DRAIN_S", "0")
    s = load_settings()
    assert (s.max_inflight_requests, s.shutdown_drain_s) == (8, 0.0)
