"""A connector-only install: ``pip install erank-search[connector]`` into a fresh venv.

The promise "the connector needs no torch" is kept by the package graph (adapters import the
contract package ``erank_contract``, never the server package ``erank``) and by the extras (the
server's dependencies sit behind ``[server]``). This test checks the promise the way a user meets
it: a new virtual environment, the project installed from this checkout without editing, and the
proxy, the REST front, the client wrappers and the installers working there while torch and vLLM
cannot even be imported. pip's cache makes the install take seconds after the first run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from engines import free_port

from erank.server import ScoringServer

ROOT = Path(__file__).resolve().parents[1]
_BUILD_OUTPUT = shutil.ignore_patterns(
    ".git", ".venv", ".*cache", "__pycache__", "build", "*.egg-info", "java"
)


def _not_installed(folder: str, names: list[str]) -> set[str]:
    """What the checkout holds beyond the installable packages: build output of earlier runs,
    and the top-level ``tests/`` and ``bench/`` (not ``erank_cli/bench/``, which is installed)."""
    ignored = set(_BUILD_OUTPUT(folder, names))
    if Path(folder) == ROOT:
        ignored |= {name for name in names if name in ("tests", "bench")}
    return ignored


@pytest.fixture(scope="session")
def connector_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a fresh venv holding only ``erank-search[connector]`` (a copy of the checkout
    is installed, so the build leaves nothing in the working tree)."""
    base = tmp_path_factory.mktemp("connector-install")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=_not_installed)
    started = time.monotonic()
    # no pip inside the venv (ensurepip takes longer than the install): this suite's pip
    # installs into it, from pip's cache, without compiling bytecode nobody will run twice
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / "venv")], check=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python"]
    pip += [str(base / "venv" / "bin" / "python"), "install", "-q", "--no-compile"]
    subprocess.run([*pip, f"{source}[connector]"], check=True, timeout=600)
    print(f"connector-only venv and install: {time.monotonic() - started:.0f} s")
    return base / "venv" / "bin"


def _python(bin_dir: Path, code: str) -> str:
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", code], capture_output=True, text=True, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_torch_vllm_and_the_server_dependencies_are_absent(connector_venv: Path) -> None:
    present = _python(
        connector_venv,
        "import importlib.util\n"
        "names = ('torch', 'vllm', 'transformers', 'numpy', 'pydantic_settings',\n"
        "         'grpc_reflection')\n"
        "print([name for name in names if importlib.util.find_spec(name)])\n",
    )
    assert present.strip() == "[]"


def test_adapters_import_without_the_server(connector_venv: Path) -> None:
    loaded = _python(
        connector_venv,
        "import sys\n"
        "import connector.proxy.app, connector.rest, connector.wrappers\n"
        "import opensearch_plugin.install, opensearch_plugin.elasticsearch, erank_cli.app\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('erank', 'torch', 'vllm')))\n",
    )
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    "command",
    [
        ["proxy"],
        ["rest"],
        ["opensearch", "install"],
        ["opensearch", "uninstall"],
        ["elasticsearch", "install"],
    ],
)
def test_adapter_commands_answer_help(connector_venv: Path, command: list[str]) -> None:
    done = subprocess.run(
        [str(connector_venv / "erank"), *command, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: erank " + " ".join(command) in done.stdout


def test_server_commands_say_which_extra_they_need(connector_venv: Path) -> None:
    done = subprocess.run(
        [str(connector_venv / "erank"), "serve", "--model", "x"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "erank-search[server" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_rest_front_and_client_score_through_the_suite_server(
    connector_venv: Path, tiny_server: ScoringServer
) -> None:
    """The installed REST front (its /metrics too) and gRPC client reach a real scoring server."""
    target = f"127.0.0.1:{tiny_server.port}"
    client = await asyncio.create_subprocess_exec(
        str(connector_venv / "python"),
        "-c",
        "import sys\n"
        "from erank_contract.client import RerankerClient\n"
        "from erank_contract.v1 import reranker_pb2 as pb\n"
        "with RerankerClient(sys.argv[1], timeout=120) as c:\n"
        "    r = c.rerank(pb.RerankRequest(query='q', documents=[pb.Document(id='a', text='t')]))\n"
        "print([x.id for x in r.results])\n",
        target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await client.communicate()
    assert client.returncode == 0, err.decode()
    assert out.decode().strip() == "['a']"

    port, metrics_port = free_port(), free_port()
    rest = await asyncio.create_subprocess_exec(
        str(connector_venv / "erank"),
        "rest",
        f"--port={port}",
        f"--reranker={target}",
        "--timeout=120",
        f"--metrics-port={metrics_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        break
                assert rest.returncode is None
                await asyncio.sleep(0.1)
            answer = await http.post("/v1/rerank", json={"query": "q", "documents": ["t", "u"]})
            metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert answer.status_code == 200, answer.text
        assert sorted(r["index"] for r in answer.json()["results"]) == [0, 1]
        assert 'erank_rest_requests_total{route="/v1/rerank",status="200"} 1.0' in metrics.text
    finally:
        rest.terminate()
        await rest.wait()
