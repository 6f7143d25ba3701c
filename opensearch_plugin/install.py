"""``erank opensearch install|uninstall|status``: ERank reranking as an OpenSearch search pipeline.

Two modes, one pipeline name (``--pipeline``, default ``erank``):

- ``native``: a pipeline with our plugin's ``erank_window`` request processor and ``erank``
  response processor (``opensearch_plugin/java/``), which calls the REST front itself and fuses
  ERank with BM25. Needs the plugin zip installed on every node.
- ``ml-commons``: OpenSearch's stock route. An ml-commons HTTP connector to the REST front
  (Cohere's rerank pre/post-process functions), a model group, a remote model registered and
  deployed on it, and a pipeline with neural-search's built-in ``rerank`` processor
  (``ml_opensearch``). Needs the ml-commons, neural-search (and so k-NN) plugins and the cluster
  settings in docs/OPENSEARCH.md; the built-in processor replaces ``_score`` (no fusion).

What install created is recorded in the pipeline itself: its ``description`` ends with
``erank-install:{json}`` (mode, template version, a fingerprint of the options, and the ids of
the connector, model group, model and ml-commons tasks). So:

- install is idempotent: same options and the objects still there (model deployed) = no change;
  other options = new objects, the pipeline switched to them, then the old ones removed;
- uninstall deletes exactly the recorded objects (and the ml-commons task log entries about the
  recorded model), and refuses a pipeline without the record;
- a failed install removes whatever it had created before failing.

All cluster calls go through ``opensearch-py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from opensearchpy import NotFoundError, OpenSearch

from opensearch_plugin import ml_commons
from opensearch_plugin.options import (
    MARKER,
    InstallError,
    InstallOptions,
    Record,
    format_time_value,
)
from opensearch_plugin.templates import render


@dataclasses.dataclass(frozen=True)
class InstallResult:
    action: Literal["created", "updated", "unchanged"]
    pipeline: str
    record: Record
    body: dict[str, Any]  # the pipeline as installed


def connect(url: str, verify_certs: bool = True, timeout: float = 60.0) -> OpenSearch:
    """A client for ``url`` (credentials may be in it: ``https://user:pass@host:9200``)."""
    return OpenSearch(
        hosts=[url], verify_certs=verify_certs, ssl_show_warn=verify_certs, timeout=timeout
    )


def read_record(client: OpenSearch, pipeline: str) -> tuple[dict[str, Any] | None, Record | None]:
    """The stored pipeline (None if absent) and its install record (None if not ours)."""
    try:
        body: dict[str, Any] = client.search_pipeline.get(id=pipeline)[pipeline]
    except NotFoundError:
        return None, None
    _, found, record = str(body.get("description", "")).partition(MARKER)
    return body, Record.model_validate_json(record) if found else None


def install(client: OpenSearch, options: InstallOptions) -> InstallResult:
    """Create or update the pipeline (and, in ml-commons mode, its connector and model)."""
    if options.mode == "ml-commons" and options.timeout_ms % 1000:
        raise InstallError(
            "--timeout: an ml-commons connector's read_timeout is whole seconds, got"
            f" {format_time_value(options.timeout_ms)}"
        )
    if options.token and options.mode == "native":
        raise InstallError(
            "--token is for --mode ml-commons; the native processor reads the REST front's token"
            " from the OpenSearch keystore (`bin/opensearch-keystore add erank.token`), never"
            " from pipeline JSON"
        )
    stored, old = read_record(client, options.pipeline)
    if stored is not None and old is None:
        raise InstallError(
            f"search pipeline [{options.pipeline}] exists and was not created by `erank opensearch"
            " install`; choose another --pipeline or delete it yourself"
        )
    fingerprint = options.fingerprint()
    if old is not None and old.fingerprint == fingerprint and ml_commons.still_there(client, old):
        assert stored is not None
        return InstallResult("unchanged", options.pipeline, old, stored)
    shared_group = old.model_group_id if old is not None else None  # an update keeps the group
    if options.mode == "native":
        record = Record(mode="native", fingerprint=fingerprint)
    else:
        record = ml_commons.create_objects(client, options, fingerprint, shared_group)
    body = pipeline_body(options, record)
    try:
        client.search_pipeline.put(id=options.pipeline, body=body)
    except Exception:
        ml_commons.remove_objects(client, record, keep_group=shared_group is not None)
        raise
    if old is not None:
        ml_commons.remove_objects(
            client, old, keep_group=old.model_group_id == record.model_group_id
        )
    return InstallResult("updated" if old else "created", options.pipeline, record, body)


def uninstall(client: OpenSearch, pipeline: str) -> list[str]:
    """Remove the pipeline and what install recorded in it; what was removed, for the log.
    Refused for a pipeline not created by install, or one an index searches with by default."""
    stored, record = read_record(client, pipeline)
    if stored is None:
        return []
    if record is None:
        raise InstallError(
            f"search pipeline [{pipeline}] was not created by `erank opensearch install`;"
            " not touching it"
        )
    users = indices_searching_with(client, pipeline)
    if users:
        listed = ", ".join(f"[{index}]" for index in users[:10])
        more = f" and {len(users) - 10} more" if len(users) > 10 else ""
        raise InstallError(
            f"search pipeline [{pipeline}] is index.search.default_pipeline of {listed}{more}:"
            " every search there would fail once it is gone; set that index setting to null"
            " (or another pipeline) first; not touching it"
        )
    client.search_pipeline.delete(id=pipeline)
    return [
        f"search pipeline {pipeline}",
        *ml_commons.remove_objects(client, record, keep_group=False),
    ]


def indices_searching_with(client: OpenSearch, pipeline: str) -> list[str]:
    """Indices (hidden and closed ones included) whose ``index.search.default_pipeline`` is
    ``pipeline``. OpenSearch deletes such a pipeline when asked, and then answers every search
    on those indices with 400 "pipeline not found"; uninstall refuses instead."""
    settings = client.indices.get_settings(
        index="*",
        name="index.search.default_pipeline",
        params={"flat_settings": "true", "expand_wildcards": "all"},
    )
    return sorted(
        index
        for index, answer in settings.items()
        if answer.get("settings", {}).get("index.search.default_pipeline") == pipeline
    )


def status(client: OpenSearch, pipeline: str) -> dict[str, Any]:
    """What is installed under ``pipeline``: the record, the processors, the model's state."""
    stored, record = read_record(client, pipeline)
    answer: dict[str, Any] = {
        "pipeline": pipeline,
        "exists": stored is not None,
        "installed_by_erank": record is not None,
    }
    if stored is None or record is None:
        return answer
    answer["record"] = record.model_dump()
    answer["processors"] = [
        name
        for phase in ("request_processors", "response_processors")
        for processor in stored.get(phase, [])
        for name in processor
    ]
    if record.model_id is not None:
        answer["model_state"] = ml_commons.model_state(client, record.model_id)
    return answer


def pipeline_body(options: InstallOptions, record: Record) -> dict[str, Any]:
    """The search pipeline for ``options``, its description carrying ``record``."""
    description = (
        f"ERank rerank ({options.mode}), managed by `erank opensearch install`; remove with"
        f" `erank opensearch uninstall --pipeline {options.pipeline}`. "
        f"{MARKER}{record.model_dump_json()}"
    )
    values: dict[str, Any] = {
        "description": description,
        "fields": list(options.fields),
        "ignore_failure": options.ignore_failure or None,
    }
    if options.mode == "native":
        values |= {
            "endpoint": options.endpoint.rstrip("/"),
            "window": options.window,
            "instruction": options.instruction,
            "alpha": options.alpha,
            "timeout": format_time_value(options.timeout_ms),
        }
        return dict(render("native-pipeline", values))
    return dict(render("ml-commons-pipeline", values | {"model_id": record.model_id}))
