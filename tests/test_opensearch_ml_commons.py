"""The stock OpenSearch route end to end: ml-commons connector -> REST front -> scoring server, and
neural-search's built-in `rerank` processor, on a real OpenSearch 2.19.6.

The integ-test-zip has no `lang-painless` module, which k-NN extends and neural-search (home of
the `rerank` processor) extends in turn. Core modules are not published as plugin zips, but the
module's jars are on Maven Central (`org.opensearch.plugin:lang-painless:<ver>` and its
dependencies), so the test assembles `modules/lang-painless/` (the jars, the descriptor and
security policy of the module) into a copy of the distribution, then installs
`opensearch-job-scheduler`, `opensearch-ml-plugin`, `opensearch-knn` and `neural-search` zips
from Maven Central. OpenSearch 3.8.0 ships lang-painless, but `opensearch-ml-plugin` and
`opensearch-job-scheduler` have no 3.8.0.0 release on Maven Central, so the 3.x line cannot carry
this chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from engines import RunningEngine, cache_dir, fetch, fetch_plugin, start_engine
from opensearchpy import OpenSearch

from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb
from opensearch_plugin.install import connect, install, status, uninstall
from opensearch_plugin.options import InstallOptions

VERSION = "2.19.6"
PLUGINS = ("opensearch-job-scheduler", "opensearch-ml-plugin", "opensearch-knn", "neural-search")
PAINLESS_JARS = (
    "lang-painless",
    "opensearch-scripting-painless-spi",
    "antlr4-runtime",
    "asm",
    "asm-analysis",
    "asm-commons",
    "asm-tree",
    "asm-util",
)
# What ml-commons needs to call a loopback HTTP endpoint on a small test machine.
ML_SETTINGS = {
    "plugins.ml_commons.connector.private_ip_enabled": True,
    "plugins.ml_commons.trusted_connector_endpoints_regex": [r"^http://127\.0\.0\.1:[0-9]+/.*$"],
    "plugins.ml_commons.native_memory_threshold": 100,
    "plugins.ml_commons.jvm_heap_memory_threshold": 95,
    "plugins.ml_commons.disk_free_space_threshold": -1,
}
INDEX = "docs"
QUERY = "how do rerankers work"
CORPUS = {
    "a": "Rerankers reorder the first-stage hits with a stronger model.",
    "b": "LLM rerankers work by judging each passage against the query.",
    "c": "BM25 ranks documents; rerankers work on its top hits.",
    "d": "Rerankers cost latency, so they work on a window of hits.",
    "e": "Prefix caching makes rerankers fast when queries repeat.",
    "f": 'Quotes and escapes: rerankers "work" on C:\\data\\docs.',
}
T = TypeVar("T")

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>erank.test</groupId><artifactId>lang-painless-module</artifactId><version>1</version>
<packaging>pom</packaging><dependencies><dependency><groupId>org.opensearch.plugin</groupId>
<artifactId>lang-painless</artifactId><version>{version}</version></dependency></dependencies>
</project>"""
_DESCRIPTOR = """description=An easy, safe and fast scripting language for OpenSearch
version={version}
name=lang-painless
classname=org.opensearch.painless.PainlessPlugin
java.version=11
opensearch.version={version}
custom.foldername=
extended.plugins=
has.native.controller=false
"""
_POLICY = """grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


def cache_with_painless(version: str) -> Path:
    """An engines cache whose ``dist/opensearch-<version>`` is the integ-test-zip (hard links)
    plus ``modules/lang-painless`` built from Maven Central; built once, atomically."""
    root = cache_dir() / "with-lang-painless"
    dist = root / "dist" / f"opensearch-{version}"
    if dist.is_dir():
        return root
    source = fetch("opensearch", version)
    dist.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dist.parent))
    try:
        home = work / "dist" / source.name
        home.parent.mkdir()
        subprocess.run(["cp", "-al", str(source), str(home)], check=True)
        module = home / "modules" / "lang-painless"
        (work / "pom.xml").write_text(_POM.format(version=version))
        done = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                f"-DoutputDirectory={module}",
                f"-DincludeArtifactIds={','.join(PAINLESS_JARS)}",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, (
            f"fetching lang-painless jars failed:\n{done.stdout}{done.stderr}"
        )
        assert len(list(module.glob("*.jar"))) == len(PAINLESS_JARS), list(module.iterdir())
        (module / "plugin-descriptor.properties").write_text(_DESCRIPTOR.format(version=version))
        (module / "plugin-security.policy").write_text(_POLICY)
        os.replace(work / "dist", dist)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Blocking client calls run off the loop that serves the REST front and scoring server."""
    return await asyncio.to_thread(call, *args, **kwargs)


@pytest.fixture(scope="module")
def opensearch() -> Iterator[RunningEngine]:
    zips = [fetch_plugin(name, VERSION) for name in PLUGINS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ERANK_ENGINES_CACHE", str(cache_with_painless(VERSION)))
        engine = start_engine("opensearch", VERSION, plugins=zips, settings=ML_SETTINGS, heap="1g")
    with engine:
        yield engine


@pytest.fixture(scope="module")
def client(opensearch: RunningEngine) -> OpenSearch:
    client = connect(opensearch.url)
    client.indices.create(
        index=INDEX,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"text": {"type": "text", "analyzer": "standard"}}},
        },
    )
    for doc_id, text in CORPUS.items():
        client.index(index=INDEX, id=doc_id, body={"text": text})
    client.indices.refresh(index=INDEX)
    return client


@pytest_asyncio.fixture(scope="module")
async def installed(client: OpenSearch, rest_url: str) -> dict[str, Any]:
    options = InstallOptions(endpoint=rest_url, mode="ml-commons", timeout_ms=120_000)
    result = await blocking(install, client, options)
    assert result.action == "created"
    assert result.record.model_id and result.record.connector_id
    return {"pipeline": options.pipeline, "model_id": result.record.model_id}


async def grpc_rank_scores(client: AsyncRerankerClient, texts: list[str]) -> list[float]:
    """rank_score per text, in input order, straight from the gRPC server."""
    answer = await client.rerank(
        pb.RerankRequest(
            query=QUERY, documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(texts)]
        )
    )
    by_index = {r.index: r.rank_score for r in answer.results}
    return [by_index[i] for i in range(len(texts))]


def similarities(prediction: dict[str, Any]) -> list[float]:
    outputs = prediction["inference_results"][0]["output"]
    assert all(o["name"] == "similarity" for o in outputs), outputs
    return [o["data"][0] for o in outputs]


def test_plugin_zips_from_maven_central_install_offline(opensearch: RunningEngine) -> None:
    """ml-commons and its job-scheduler (and k-NN, neural-search) from Maven Central, installed
    offline in the engine's own version. (On 2.19 only: neither ml plugin's 3.8.0.0 is there.)"""
    plugins = opensearch.request("GET", "/_cat/plugins?format=json")
    wanted = {
        "opensearch-job-scheduler",
        "opensearch-ml",
        "opensearch-knn",
        "opensearch-neural-search",
    }
    assert {p["component"] for p in plugins} >= wanted, plugins
    assert all(p["version"] == f"{VERSION}.0" for p in plugins), plugins


async def test_predict_returns_the_servers_scores(
    client: OpenSearch, installed: dict[str, Any], tiny_client: AsyncRerankerClient
) -> None:
    texts = list(CORPUS.values())
    expected = await grpc_rank_scores(tiny_client, texts)
    # what neural-search's rerank processor sends: text_similarity input, through the
    # connector's pre-process function, our REST front and the post-process function
    as_processor = await blocking(
        client.plugins.ml.predict,
        algorithm_name="text_similarity",
        model_id=installed["model_id"],
        body={"query_text": QUERY, "text_docs": texts},
    )
    assert similarities(as_processor) == pytest.approx(expected, rel=1e-6)
    # the raw remote-model form of the ml-commons tutorial
    raw = await blocking(
        client.plugins.ml.predict_model,
        model_id=installed["model_id"],
        body={"parameters": {"query": QUERY, "documents": texts, "top_n": len(texts)}},
    )
    assert similarities(raw) == pytest.approx(expected, rel=1e-6)


async def test_builtin_rerank_processor(
    client: OpenSearch, installed: dict[str, Any], tiny_client: AsyncRerankerClient
) -> None:
    answer = await blocking(
        client.search,
        index=INDEX,
        params={"search_pipeline": installed["pipeline"]},
        body={
            "query": {"match": {"text": QUERY}},
            "size": len(CORPUS),
            "ext": {"rerank": {"query_context": {"query_text": QUERY}}},
        },
    )
    hits = answer["hits"]["hits"]
    assert {h["_id"] for h in hits} == set(CORPUS)
    expected = await grpc_rank_scores(tiny_client, [h["_source"]["text"] for h in hits])
    by_id = {h["_id"]: score for h, score in zip(hits, expected, strict=True)}
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx([by_id[h["_id"]] for h in hits], rel=1e-6)


def ml_objects(client: OpenSearch) -> dict[str, set[str]]:
    """Ids of every ml-commons connector, model, model group and task, and the pipelines."""
    client.indices.refresh(index=".plugins-ml-*", expand_wildcards="all")  # search sees all
    objects: dict[str, set[str]] = {}
    for kind in ("connectors", "models", "model_groups", "tasks"):
        found = client.transport.perform_request(
            "POST", f"/_plugins/_ml/{kind}/_search", body={"query": {"match_all": {}}, "size": 1000}
        )
        objects[kind] = {hit["_id"] for hit in found["hits"]["hits"]}
    with contextlib.suppress(Exception):
        objects["pipelines"] = set(client.search_pipeline.get())
    return objects


@pytest.mark.filterwarnings("ignore:this request accesses system indices")
async def test_install_twice_is_once_update_and_uninstall_restore(
    client: OpenSearch, installed: dict[str, Any], rest_url: str
) -> None:
    before = await blocking(ml_objects, client)
    options = InstallOptions(
        endpoint=rest_url, pipeline="erank_idem", mode="ml-commons", ignore_failure=True
    )
    first = await blocking(install, client, options)
    again = await blocking(install, client, options)
    assert (first.action, again.action) == ("created", "unchanged")
    assert again.record == first.record
    processor = first.body["response_processors"][0]["rerank"]
    assert processor["ignore_failure"] is True
    assert processor["ml_opensearch"] == {"model_id": first.record.model_id}
    state = await blocking(status, client, options.pipeline)
    assert state["model_state"] == "DEPLOYED" and state["processors"] == ["rerank"]

    changed = dataclasses.replace(options, instruction="Judge relevance.")
    updated = await blocking(install, client, changed)
    assert updated.action == "updated"
    assert updated.record.model_group_id == first.record.model_group_id
    assert updated.record.model_id != first.record.model_id
    now = await blocking(ml_objects, client)
    assert first.record.model_id not in now["models"]
    assert first.record.connector_id not in now["connectors"]

    removed = await blocking(uninstall, client, options.pipeline)
    assert f"model {updated.record.model_id}" in removed
    assert f"model group {updated.record.model_group_id}" in removed
    after = await blocking(ml_objects, client)
    assert {k: v for k, v in after.items() if k != "tasks"} == {
        k: v for k, v in before.items() if k != "tasks"
    }
    assert before["tasks"] <= after["tasks"]
    # ml-commons may log its own asynchronous DEPLOY_MODEL task (model auto-redeploy) for the
    # model that was there before; no task may be about a model install created
    new_tasks = [client.plugins.ml.get_task(task_id=t) for t in after["tasks"] - before["tasks"]]
    assert all(task["model_id"] in before["models"] for task in new_tasks), new_tasks


@pytest.mark.filterwarnings("ignore:this request accesses system indices")
async def test_token_goes_to_the_connector_credential_not_to_json(
    client: OpenSearch, rest_url: str
) -> None:
    """`--token`: ml-commons keeps it (encrypted) in the connector's credential and sends
    `Authorization: Bearer ${credential.token}`; neither the connector nor the pipeline shows it."""
    token = "ml-commons-token-" + "x" * 16
    options = InstallOptions(
        endpoint=rest_url,
        pipeline="erank_token",
        mode="ml-commons",
        timeout_ms=120_000,
        token=token,
    )
    result = await blocking(install, client, options)
    try:
        connector = await blocking(
            client.transport.perform_request,
            "GET",
            f"/_plugins/_ml/connectors/{result.record.connector_id}",
        )
        headers = connector["actions"][0]["headers"]
        assert headers["Authorization"] == "Bearer ${credential.token}"
        pipeline = await blocking(client.search_pipeline.get, id=options.pipeline)
        assert token not in json.dumps(connector) and token not in json.dumps(pipeline)
        # the model still answers through the connector (the REST front here takes any token)
        prediction = await blocking(
            client.plugins.ml.predict,
            algorithm_name="text_similarity",
            model_id=result.record.model_id,
            body={"query_text": QUERY, "text_docs": ["a", "b"]},
        )
        assert len(similarities(prediction)) == 2
    finally:
        await blocking(uninstall, client, options.pipeline)
