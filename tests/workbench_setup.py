"""What the workbench's tests share: a small corpus in a real OpenSearch, the workbench app on a
free port, and Debian's Chromium (installed with apt when missing and root, as CI runs; a test
that needs it and cannot get it fails, never skips)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest_asyncio
from conftest import engine_settings
from engines import OPENSEARCH_VERSIONS, EngineKind, EnginePool, RunningEngine

from connector.rest import create_app as create_rest_app
from connector.workbench import create_app, serving
from erank.checkpoints import build_scripted_checkpoint
from erank.server import ScoringServer, running_server
from erank_cli.demo import DEMO_MODELS

INDEX = "workbench-docs"
VERSION = OPENSEARCH_VERSIONS[-1]
BUDGET_MS = 120_000  # a budget the tiny model on a busy CPU always meets: nothing is cut
MAPPINGS = {
    "properties": {
        "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "text": {"type": "text"},
        "tag": {"type": "keyword"},
    }
}
DOCS = {
    f"d{i}": {"title": title, "text": text, "tag": "t"}
    for i, (title, text) in enumerate(
        [
            ("Foxes", "The quick brown fox jumps over the lazy dog."),
            ("Red fox", "A red fox is quick and clever in the forest."),
            ("Dogs", "Lazy dogs sleep all day in the sun."),
            ("Fox habitat", "Foxes live in forests, grasslands and quick-changing cities."),
            ("Cats", "A quick cat chases a mouse, not a fox."),
            ("Arctic fox", "The arctic fox has a white coat in winter; quick to hide."),
            ("Wolves", "Wolves hunt in packs; a fox hunts alone."),
            ("Speed", "The quickest land animal is the cheetah, not the fox."),
            ("Fables", "In fables the fox is quick-witted and the crow is vain."),
            ("Gardens", "Fences keep a quick fox out of the chicken run."),
            ("Birds", "Crows and ravens are clever birds."),
            ("Fish", "Salmon swim upstream to spawn."),
        ],
        start=1,
    )
}
QUERY = "quick fox"


def demo_checkpoint() -> Path:
    """``erank demo``'s tiny model: it answers in a handful of tokens and its answer (0-9) and
    Pr(N) vary with the document, so fused orders differ from the first stage's and by alpha."""
    return build_scripted_checkpoint(*DEMO_MODELS["tiny"])


@pytest_asyncio.fixture(scope="session", name="demo_server")
async def demo_server_fixture() -> AsyncIterator[ScoringServer]:
    """The demo model on the real vLLM CPU engine behind a real gRPC server (one per session,
    shared by the workbench's modules)."""
    async with running_server(engine_settings(demo_checkpoint())) as server:
        yield server


@pytest_asyncio.fixture(scope="session", name="demo_rest_url")
async def demo_rest_url_fixture(demo_server: ScoringServer) -> AsyncIterator[str]:
    """``erank rest`` in front of :func:`demo_server`: ``/v1/rerank`` for the fusion checks."""
    app = create_rest_app(f"127.0.0.1:{demo_server.port}", timeout=120)
    async with serving(app) as url:
        yield url


def index_corpus(
    engine_pool: EnginePool, kind: EngineKind = "opensearch", version: str = VERSION
) -> RunningEngine:
    """The pool's engine (default: the newest OpenSearch) with :data:`DOCS` in :data:`INDEX`,
    created afresh."""
    engine = engine_pool.get(kind, version)
    engine.request("DELETE", f"/{INDEX}", expect_error=True)
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    engine.request("PUT", f"/{INDEX}", {"settings": settings, "mappings": MAPPINGS})
    bulk: list[dict[str, Any]] = []
    for doc_id, doc in DOCS.items():
        bulk += [{"index": {"_index": INDEX, "_id": doc_id}}, doc]
    assert engine.request("POST", "/_bulk?refresh=true", bulk)["errors"] is False
    return engine


VECTORS = "workbench-vectors"


def index_vectors(engine: RunningEngine) -> dict[str, list[float]]:
    """:data:`DOCS` again, each with a 3-dimensional ``vec`` (Elasticsearch's dense_vector)."""
    rng = random.Random(7)
    vectors = {doc: [rng.uniform(-1, 1) for _ in range(3)] for doc in DOCS}
    mappings = {"properties": {"text": {"type": "text"}, "vec": {"type": "dense_vector",
                "dims": 3, "index": True, "similarity": "cosine"}}}  # fmt: skip
    engine.request("DELETE", f"/{VECTORS}", expect_error=True)
    engine.request("PUT", f"/{VECTORS}", {"mappings": mappings})
    bulk: list[dict[str, Any]] = []
    for doc, vector in vectors.items():
        bulk += [
            {"index": {"_index": VECTORS, "_id": doc}},
            {"text": DOCS[doc]["text"], "vec": vector},
        ]
    assert engine.request("POST", "/_bulk?refresh=true", bulk)["errors"] is False
    return vectors


def engine_ids(engine: RunningEngine, field: str, query: str, size: int) -> list[str]:
    """The engine's own top ``size`` for ``match`` on ``field``: the first stage."""
    body = {"query": {"match": {field: query}}, "size": size}
    return [h["_id"] for h in engine.request("POST", f"/{INDEX}/_search", body)["hits"]["hits"]]


@asynccontextmanager
async def workbench(
    engine: RunningEngine, reranker: str, workspace: Path, token: str | None = None
) -> AsyncIterator[str]:
    """``erank workbench``'s app on a free loopback port; yields its base URL."""
    async with serving(create_app(engine.url, reranker, workspace, token=token)) as url:
        yield url


def chromium() -> str:
    """The system Chromium; installed from Debian's packages when missing and this is root
    (CI); otherwise an error saying how to get it."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=env).returncode != 0:  # no package lists yet
            subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
            subprocess.run(install, check=True, env=env)
        found = shutil.which("chromium")
    if not found:
        raise RuntimeError("the browser tests need Debian's chromium: apt-get install chromium")
    return found


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
