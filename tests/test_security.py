"""TLS, mutual TLS and the bearer token on a real scoring server (tiny model, real vLLM engine).

Certificates are real X.509 ones made per module (tests/certs.py). One server with mutual TLS
and a token runs on the session's engine: the right certificate and token pass; a wrong or
missing token is ``UNAUTHENTICATED``; no client certificate, one from another CA, a plaintext
client, or a client trusting another CA cannot connect (``UNAVAILABLE``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
import typer
from certs import Certs, make_certs
from conftest import engine_settings
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError
from typer.testing import CliRunner

from connector.proxy.app import Proxy
from connector.rest import create_app, serving
from connector.rewrite.config import ConfigError, parse_config
from connector.security_options import client_security
from connector.wrappers import Reranking
from erank.server import ScoringServer, running_server
from erank.settings import ServerSettings, load_settings
from erank_cli.app import app
from erank_contract.client import AsyncRerankerClient, RerankerClient
from erank_contract.security import ClientSecurity
from erank_contract.v1 import reranker_pb2 as pb

pytestmark = pytest.mark.engine

TOKEN = "s3cret-token-for-tests"
REQUEST = pb.RerankRequest(
    query="I am happy",
    documents=[pb.Document(id="a", text="excited"), pb.Document(id="b", text="sad")],
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest_asyncio.fixture(scope="module")
async def secure_server(tiny_server: ScoringServer, certs: Certs) -> AsyncIterator[ScoringServer]:
    """Mutual TLS (clients need a certificate of the test CA) and a bearer token."""
    settings = engine_settings(
        tiny_server.settings.model,
        tls_cert=certs.server.cert,
        tls_key=certs.server.key,
        tls_client_ca=certs.ca,
        token=TOKEN,
    )
    async with running_server(settings, tiny_server.backend) as server:
        yield server


def good(certs: Certs, **changes: object) -> ClientSecurity:
    """The client settings that pass, with ``changes``."""
    fields: dict[str, object] = dict(
        tls_ca=certs.ca, tls_cert=certs.client.cert, tls_key=certs.client.key, token=TOKEN
    )
    fields.update(changes)
    return ClientSecurity.model_validate(fields)


async def test_right_certificate_and_token_pass(secure_server: ScoringServer, certs: Certs) -> None:
    address = f"127.0.0.1:{secure_server.port}"
    async with AsyncRerankerClient(address, timeout=60, security=good(certs)) as client:
        response = await client.rerank(REQUEST)
        assert sorted(r.id for r in response.results) == ["a", "b"]
        events = [e async for e in client.stub.RerankStream(REQUEST, timeout=60)]
        assert events
    # the blocking client, with the token from a file and the name checked as "localhost"
    token_file = certs.ca.parent / "token"
    token_file.write_text(TOKEN + "\n")
    security = good(certs, token=None, token_file=token_file, tls_server_name="localhost")

    def blocking_call() -> str:  # off the loop: the server answers on this test's loop
        with RerankerClient(address, timeout=60, security=security) as blocking:
            return blocking.model_info().model

    assert await asyncio.to_thread(blocking_call)


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", ""])
async def test_missing_or_wrong_token_is_unauthenticated(
    secure_server: ScoringServer, certs: Certs, token: str | None
) -> None:
    address = f"127.0.0.1:{secure_server.port}"
    security = good(certs, token=token or None)
    async with AsyncRerankerClient(address, timeout=30, security=security) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.rerank(REQUEST)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TOKEN not in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in client.stub.RerankStream(REQUEST, timeout=30):
                pass
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.model_info()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health checks stay open: probes carry no token
        health = health_pb2_grpc.HealthStub(client.channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service="erank.v1.Reranker"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        # and so does reflection (grpcurl list)
        reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        async for listed in reflection.ServerReflectionInfo(iter([ask])):
            names = {s.name for s in listed.list_services_response.service}
            assert "erank.v1.Reranker" in names


def _refused_connections(certs: Certs) -> dict[str, ClientSecurity]:
    return {
        "no client certificate": good(certs, tls_cert=None, tls_key=None),
        "client certificate of another CA": good(
            certs, tls_cert=certs.rogue_client.cert, tls_key=certs.rogue_client.key
        ),
        "client trusts another CA": good(certs, tls_ca=certs.rogue_ca),
        "client trusts the system's CAs only": good(certs, tls_ca=None, tls=True),
        "plaintext": ClientSecurity(token=TOKEN),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no client certificate",
        "client certificate of another CA",
        "client trusts another CA",
        "client trusts the system's CAs only",
        "plaintext",
    ],
)
async def test_wrong_or_missing_certificate_cannot_connect(
    secure_server: ScoringServer, certs: Certs, case: str
) -> None:
    security = _refused_connections(certs)[case]
    address = f"127.0.0.1:{secure_server.port}"
    async with AsyncRerankerClient(address, timeout=10, security=security) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.rerank(REQUEST)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()


async def test_rest_front_reaches_a_protected_server(
    secure_server: ScoringServer, certs: Certs
) -> None:
    address = f"127.0.0.1:{secure_server.port}"
    async with (
        serving(create_app(address, timeout=60, security=good(certs))) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        assert (await http.get("/health")).json() == {"status": "SERVING"}
        answer = await http.post("/v1/rerank", json={"query": "q", "documents": ["x", "y"]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == 2
    # without the token, the front answers the scoring server's refusal, not a 500
    no_token = good(certs, token=None)
    async with (
        serving(create_app(address, timeout=60, security=no_token)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        refused = await http.post("/v1/rerank", json={"query": "q", "documents": ["x"]})
    assert refused.status_code == 502
    assert "missing authorization metadata" in refused.json()["error"]["reason"]


async def test_token_from_a_file_and_never_logged(
    tiny_server: ScoringServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    settings = engine_settings(tiny_server.settings.model, token_file=token_file)
    caplog.set_level(logging.DEBUG)
    async with running_server(settings, tiny_server.backend) as server:
        address = f"127.0.0.1:{server.port}"
        async with AsyncRerankerClient(address, security=ClientSecurity(token=TOKEN)) as client:
            assert (await client.rerank(REQUEST)).results
        async with AsyncRerankerClient(address, security=ClientSecurity(token="no")) as client:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.rerank(REQUEST)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "plaintext, bearer token required" in caplog.text
    assert TOKEN not in caplog.text
    with_token = engine_settings(tiny_server.settings.model, token=TOKEN)
    assert TOKEN not in repr(with_token) and TOKEN not in str(with_token.model_dump())
    assert TOKEN not in repr(ClientSecurity(token=TOKEN))


def test_token_and_tls_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ERANK_TOKEN", TOKEN)
    monkeypatch.setenv("ERANK_TLS_CERT", str(tmp_path / "c.pem"))
    monkeypatch.setenv("ERANK_TLS_KEY", str(tmp_path / "k.pem"))
    settings = load_settings()
    assert settings.token is not None and settings.token.get_secret_value() == TOKEN
    assert settings.tls_cert == tmp_path / "c.pem"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tls_cert": "c.pem"}, "tls_cert and tls_key"),
        ({"tls_key": "k.pem"}, "tls_cert and tls_key"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca"),
        ({"token": "t", "token_file": "f"}, "token or token_file"),
        ({"token": "  "}, "token is empty"),
    ],
)
def test_half_a_security_setup_is_refused(fields: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        ServerSettings(**fields)  # type: ignore[arg-type]


async def test_unreadable_certificate_names_the_field(tmp_path: Path) -> None:
    """A TLS file that cannot be read is refused naming its setting (the gRPC server is built
    on the running loop, as `erank serve` builds it)."""
    missing = tmp_path / "nope.pem"
    settings = ServerSettings(tls_cert=missing, tls_key=missing, port=0)
    with pytest.raises(ValueError, match="tls_key: cannot read"):
        ScoringServer(settings)
    with pytest.raises(ValueError, match="tls_ca: cannot read"):
        ClientSecurity(tls_ca=missing).credentials()


@pytest.mark.parametrize("unreadable", ["missing", "directory"])
def test_serve_with_an_unreadable_certificate_exits_with_one_line(
    certs: Certs, tmp_path: Path, unreadable: str
) -> None:
    """`erank serve --tls-cert` on a file it cannot read: exit 1 before any engine starts, one
    line naming the setting and the file, no traceback (root reads a file whatever its mode,
    so a directory stands for one without read permission)."""
    cert = tmp_path / "cert.pem"
    if unreadable == "directory":
        cert.mkdir()
    command = [sys.executable, "-m", "erank_cli", "serve", "--model", str(tmp_path), "--port=0"]
    command += ["--tls-cert", str(cert), "--tls-key", str(certs.server.key)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stderr.strip().splitlines() == [
        f"erank serve: tls_cert: cannot read {cert}: "
        + ("No such file or directory" if unreadable == "missing" else "Is a directory")
    ]


def _outside_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.255", 9))
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


async def _metrics_answer(address: str, port: int) -> int | None:
    """HTTP status of ``/metrics`` at ``address``, ``None`` when the connection is refused."""
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"http://{address}:{port}/metrics")).status_code
    except httpx.ConnectError:
        return None


@pytest.mark.parametrize(("metrics_host", "bound"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
async def test_metrics_stay_on_loopback_unless_told(
    tiny_server: ScoringServer, metrics_host: str | None, bound: str
) -> None:
    """gRPC on every interface does not open /metrics to them: only ``metrics_host`` does."""
    extra = {"metrics_host": metrics_host} if metrics_host else {}
    settings = engine_settings(tiny_server.settings.model, host="0.0.0.0", metrics_port=0, **extra)
    async with running_server(settings, tiny_server.backend) as server:
        assert server.metrics is not None
        assert server.metrics.host == bound
        assert await _metrics_answer("127.0.0.1", server.metrics.port) == 200
        outside = _outside_address()
        if outside is not None:  # a machine without a network has nothing more to show
            expected = None if bound == "127.0.0.1" else 200
            assert await _metrics_answer(outside, server.metrics.port) == expected


async def test_proxy_and_wrappers_use_their_scoring_server_section(
    secure_server: ScoringServer, certs: Certs
) -> None:
    """`scoring_server:` in the proxy's (and the wrappers') config reaches a protected server."""
    section = good(certs).model_dump(exclude_none=True)
    section["token"] = TOKEN  # a SecretStr dumps masked; the file holds the plain text
    config = parse_config({"scoring_server": section})
    address = f"127.0.0.1:{secure_server.port}"
    proxy = Proxy("http://127.0.0.1:9", address, config)
    try:
        assert (await proxy.reranker.rerank(REQUEST)).results
    finally:
        await proxy.close()
    reranking = Reranking(address, config, elasticsearch=True)
    try:
        assert (await reranking.async_client.rerank(REQUEST)).results
    finally:
        await reranking.async_client.close()
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        parse_config({"scoring_server": {"tls_cert": str(certs.client.cert)}})


def test_rest_flags_build_theclient_security(monkeypatch: pytest.MonkeyPatch, certs: Certs) -> None:
    monkeypatch.setenv("ERANK_RERANKER_TOKEN", TOKEN)
    security = client_security(False, certs.ca, certs.client.cert, certs.client.key, None, None)
    assert security.uses_tls and security.bearer_token() == TOKEN
    with pytest.raises(typer.BadParameter, match="tls_cert and tls_key"):
        client_security(False, None, certs.client.cert, None, None, None)


async def test_eval_reaches_a_protected_server(
    secure_server: ScoringServer, certs: Certs, tmp_path: Path
) -> None:
    """`erank eval --reranker-*`: the right flags score; without the token, a one-line refusal."""
    data = Path(__file__).parent / "data" / "eval"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    base = ["eval", str(data), "--run", str(data / "bm25.run"), "--depth", "3"]
    base += ["--sweep-points", "0", "--reranker", f"127.0.0.1:{secure_server.port}"]
    base += ["--reranker-ca", str(certs.ca), "--reranker-cert", str(certs.client.cert)]
    base += ["--reranker-key", str(certs.client.key), "--timeout", "300"]
    scored = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [*base, "--output", str(tmp_path / "ok"), "--reranker-token-file", str(token_file)],
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "ok" / "eval.json").read_text())["systems"]
    refused = await asyncio.to_thread(
        CliRunner().invoke, app, [*base, "--output", str(tmp_path / "no")]
    )
    assert refused.exit_code == 1
    assert "UNAUTHENTICATED" in refused.stderr and "Traceback" not in refused.output
