"""The ml-commons objects of ``--mode ml-commons``: model group, HTTP connector to the REST
front (Cohere's rerank pre/post-process functions), remote model registered and deployed.

Every id is put in the :class:`~opensearch_plugin.options.Record` as soon as it exists, so a
failure half-way (or a later uninstall) deletes exactly what was created.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from opensearchpy import ConflictError, NotFoundError, OpenSearch, RequestError

from opensearch_plugin.options import InstallError, InstallOptions, Record
from opensearch_plugin.templates import render

TASK_TIMEOUT_S = 120.0


def create_objects(
    client: OpenSearch, options: InstallOptions, fingerprint: str, group_id: str | None
) -> Record:
    """Create (or reuse ``group_id`` as) the model group, then the connector and the model,
    deployed; on any failure, delete what was created and raise."""
    ml = client.plugins.ml
    name = f"erank-{options.pipeline}-{uuid.uuid4().hex[:8]}"
    description = f"ERank via {options.rerank_url}, for search pipeline [{options.pipeline}]"
    record = Record(mode="ml-commons", fingerprint=fingerprint, model_group_id=group_id)
    try:
        if record.model_group_id is None:
            group = render("ml-commons-model-group", {"name": name, "description": description})
            record.model_group_id = ml.register_model_group(body=group)["model_group_id"]
        connector = render(
            "ml-commons-connector",
            {
                "name": name,
                "description": description,
                "rerank_url": options.rerank_url,
                # substituted raw into the request body, so it carries its own JSON quoting
                "instruction_json": json.dumps(options.instruction or ""),
                "timeout_s": options.timeout_ms // 1000,
                **_token_values(options.token),
            },
        )
        record.connector_id = ml.create_connector(body=connector)["connector_id"]
        model = render(
            "ml-commons-model",
            {
                "name": name,
                "description": description,
                "model_group_id": record.model_group_id,
                "connector_id": record.connector_id,
            },
        )
        registered = ml.register_model(body=model)
        record.task_ids.append(registered["task_id"])
        record.model_id = registered.get("model_id") or _wait_task(client, registered["task_id"])
        deployed = ml.deploy_model(model_id=record.model_id)
        record.task_ids.append(deployed["task_id"])
        _wait_task(client, deployed["task_id"])
    except Exception:
        remove_objects(client, record, keep_group=group_id is not None)
        raise
    return record


def _token_values(token: str | None) -> dict[str, Any]:
    """Connector credential and headers: ml-commons encrypts the credential and fills
    ``${credential.token}`` when it calls; without a token, a placeholder credential (ml-commons
    requires one) and no ``Authorization`` header."""
    headers = {"Content-Type": "application/json"}
    if token is None:
        credential = {"note": "ml-commons requires a credential; the REST front takes none"}
    else:
        credential = {"token": token}
        headers["Authorization"] = "Bearer ${credential.token}"  # ml-commons' substitution
    return {"credential": credential, "headers": headers}


def _wait_task(client: OpenSearch, task_id: str) -> str:
    """Wait for an ml-commons task to finish; its model id."""
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while True:
        task = client.plugins.ml.get_task(task_id=task_id)
        if task.get("state") == "COMPLETED":
            return str(task.get("model_id", ""))
        if task.get("state") in {"FAILED", "COMPLETED_WITH_ERROR"} or time.monotonic() > deadline:
            raise InstallError(f"ml-commons task {task_id} did not complete: {task}")
        time.sleep(0.5)


def model_state(client: OpenSearch, model_id: str) -> str | None:
    try:
        return str(client.plugins.ml.get_model(model_id=model_id).get("model_state"))
    except NotFoundError:
        return None


def still_there(client: OpenSearch, record: Record) -> bool:
    """Whether the recorded objects still serve; a recorded model that was undeployed (e.g. by a
    cluster restart without auto-deploy) is deployed again."""
    if record.model_id is None:
        return True
    state = model_state(client, record.model_id)
    if state is None:
        return False
    if state != "DEPLOYED":
        deployed = client.plugins.ml.deploy_model(model_id=record.model_id)
        _wait_task(client, deployed["task_id"])
        client.plugins.ml.delete_task(task_id=deployed["task_id"])  # not in the record
    return True


def remove_objects(client: OpenSearch, record: Record, keep_group: bool) -> list[str]:
    """Delete the recorded ml-commons objects that exist (model first: it uses the others)."""
    ml = client.plugins.ml
    steps: list[tuple[str, Callable[[], Any]]] = []
    if record.model_id is not None:
        steps += [
            (
                f"deployment of model {record.model_id}",
                partial(ml.undeploy_model, model_id=record.model_id),
            ),
            (f"model {record.model_id}", partial(ml.delete_model, model_id=record.model_id)),
        ]
    if record.connector_id is not None:
        steps.append(
            (
                f"connector {record.connector_id}",
                partial(ml.delete_connector, connector_id=record.connector_id),
            )
        )
    tasks = sorted(set(record.task_ids) | _tasks_of(client, record.model_id))
    steps += [(f"task {t}", partial(ml.delete_task, task_id=t)) for t in tasks]
    if record.model_group_id is not None and not keep_group:
        steps.append(
            (
                f"model group {record.model_group_id}",
                partial(ml.delete_model_group, model_group_id=record.model_group_id),
            )
        )
    removed: list[str] = []
    for what, call in steps:
        try:
            _retry(call)
        except NotFoundError:
            continue
        removed.append(what)
    return removed


def _tasks_of(client: OpenSearch, model_id: str | None) -> set[str]:
    """Tasks ml-commons logged about the model on its own (e.g. an auto-redeploy)."""
    if model_id is None:
        return set()
    query = {"query": {"term": {"model_id": model_id}}, "size": 1000}
    try:
        found = client.plugins.ml.search_tasks(body=query)
    except NotFoundError:  # no task index yet
        return set()
    return {hit["_id"] for hit in found["hits"]["hits"]}


def _retry(call: Callable[[], Any], attempts: int = 60) -> Any:
    """ml-commons updates model state asynchronously: a delete right after an undeploy may be
    refused for a moment (HTTP 400/409; seconds on a busy node, so up to 30 s here); anything
    else is raised at once."""
    for attempt in range(attempts):
        try:
            return call()
        except (ConflictError, RequestError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")
