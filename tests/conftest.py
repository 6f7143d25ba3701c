"""Shared fixtures: tiny checkpoints the suite builds itself, and real scoring servers on vLLM.

Every engine here is the real vLLM CPU engine; a test that needs one and cannot get one fails.
Engines are expensive (tens of seconds to start), so each checkpoint gets one engine per session
and servers on it are reused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", str(Path.home() / ".cache" / "erank" / "vllm"))
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import pytest
import pytest_asyncio
from engines import RunningEngine, engine_pool_fixture, fetch_plugin, start_engine
from hypothesis import HealthCheck, settings
from valkey_server import valkey_server

from connector.rest import create_app, serving
from erank.checkpoints import (
    Script,
    TinyConfig,
    build_random_checkpoint,
    build_scripted_checkpoint,
)
from erank.server import ScoringServer, running_server
from erank.settings import ServerSettings
from erank_contract.client import AsyncRerankerClient

# Property tests share the machine with vLLM engines and search-engine JVMs started by the same
# session: wall-clock limits on generating examples would fail on load, not on behaviour.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")

# Plain OpenSearch/Elasticsearch engines, started once per session (tests/engines/fixtures.py).
engine_pool = engine_pool_fixture()
VECTOR_OPENSEARCH = (
    "2.19.6"  # the version whose k-NN and neural-search plugins Maven Central serves
)


@pytest.fixture(scope="session")
def vector_opensearch() -> Iterator[RunningEngine]:
    """OpenSearch with our plugin, k-NN and neural-search (lang-painless added): one engine for
    the vector tests of test_opensearch_vectors and test_proxy_first_stages, which keep their
    indices and pipelines apart by name (a plugin engine start costs ~30 s)."""
    from test_opensearch_ml_commons import cache_with_painless  # test modules import conftest
    from test_opensearch_native import plugin_zip

    version = VECTOR_OPENSEARCH
    names = ("opensearch-knn", "neural-search")
    plugins = [plugin_zip(version)] + [fetch_plugin(name, version) for name in names]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ERANK_ENGINES_CACHE", str(cache_with_painless(version)))
        engine = start_engine("opensearch", version, plugins=plugins)
    with engine:
        yield engine


SCRIPT_7 = Script()  # <think>scripted</think><answer>7</answer>, logits 7: 8.0, 8: 7.0
SCRIPT_10 = Script(
    text="<think>sure</think><answer>10</answer>",
    answer_logits={"1": 9.0, "2": 8.5},
    continuation_logits={"0": 7.0, "</": 6.0},
)


def engine_settings(model: Path, **kw: object) -> ServerSettings:
    """Settings for a tiny checkpoint on the CPU engine: float32, eager, any free port."""
    base: dict[str, object] = dict(
        model=str(model), port=0, dtype="float32", enforce_eager=True, max_new_tokens=256
    )
    base.update(kw)
    return ServerSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def random_checkpoint() -> Path:
    return build_random_checkpoint()


@pytest.fixture(scope="session")
def scripted7_checkpoint() -> Path:
    return build_scripted_checkpoint(SCRIPT_7)


@pytest.fixture(scope="session")
def scripted10_checkpoint() -> Path:
    return build_scripted_checkpoint(SCRIPT_10)


@pytest_asyncio.fixture(scope="session")
async def tiny_server(random_checkpoint: Path) -> AsyncIterator[ScoringServer]:
    """The random tiny model on the real vLLM CPU engine behind a real gRPC server."""
    async with running_server(engine_settings(random_checkpoint)) as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def tiny_client(tiny_server: ScoringServer) -> AsyncIterator[AsyncRerankerClient]:
    async with AsyncRerankerClient(f"127.0.0.1:{tiny_server.port}", timeout=120) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def scripted7_server(scripted7_checkpoint: Path) -> AsyncIterator[ScoringServer]:
    async with running_server(engine_settings(scripted7_checkpoint)) as server:
        yield server


# A bigram chain that answers 10 after a short think, or (prompts holding " sofa" often enough)
# after 200 filler tokens of reasoning: two documents of one request take very different times.
SCRIPT_BRANCH = Script(
    text="<think>ok</think><answer>10</answer>",
    answer_logits={"1": 9.0, "2": 8.5},
    continuation_logits={"0": 7.0, "</": 6.0},
    think_tokens=200,
    trigger=" sofa",
)
BRANCH_CONFIG = TinyConfig(hidden_size=256)
LONG_DOCUMENT = " sofa" * 100  # the trigger's share of the prompt is far above the branch point


@pytest.fixture(scope="session")
def branch_checkpoint() -> Path:
    return build_scripted_checkpoint(SCRIPT_BRANCH, BRANCH_CONFIG)


@pytest_asyncio.fixture(scope="session")
async def branch_server(branch_checkpoint: Path) -> AsyncIterator[ScoringServer]:
    """The branching scripted model on the real vLLM CPU engine (one engine per session)."""
    async with running_server(engine_settings(branch_checkpoint)) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def rest_url(tiny_server: ScoringServer) -> AsyncIterator[str]:
    """The REST front (``erank rest``) on a free port in front of the tiny scoring server."""
    async with serving(create_app(f"127.0.0.1:{tiny_server.port}", timeout=120)) as url:
        yield url


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A real Valkey server (tests/valkey_server.py) shared by the session's tests that only
    read and write it; tests that kill or pause a server start their own."""
    with valkey_server() as server:
        yield server.url
