"""``_msearch`` item by item: each search of the batch is planned, rewritten and reranked on
its own (its own index settings, window and page), in one request to the engine.

An item with a bad ``ext.erank`` is not sent; its place in ``responses`` gets the 400 error
object the engines use for a failed item, and the other items run as usual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.rewrite.config import ConfigError, ProxyConfig
from connector.rewrite.search import SearchPlan, Skip, error_json, plan_search


@dataclass(frozen=True)
class Item:
    """One search of an ``_msearch``: its header line and what to do with it."""

    header: dict[str, Any]
    plan: SearchPlan | Skip | ConfigError

    def forward_body(self) -> dict[str, Any] | None:
        """The body line to send the engine; None when the item is not sent at all."""
        if isinstance(self.plan, ConfigError):
            return None
        return self.plan.body if isinstance(self.plan, SearchPlan) else (self.plan.body or {})


def parse_ndjson(data: bytes | str) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """``[(header, body), ...]`` of an ``_msearch`` body; None when it is not header/body pairs
    of JSON objects (the engine then answers with its own error)."""
    try:  # not UTF-8 is a ValueError; nesting too deep for json a RecursionError
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        lines = [json.loads(line) for line in text.split("\n") if line.strip()]
    except (ValueError, RecursionError):
        return None
    if len(lines) % 2 or not all(isinstance(line, dict) for line in lines):
        return None
    return list(zip(lines[0::2], lines[1::2], strict=True))


def _target(header: Mapping[str, Any], path_target: str | None) -> str | None:
    index = header.get("index")
    if isinstance(index, list):
        return ",".join(str(i) for i in index)
    return str(index) if index else path_target


def plan_items(
    path_target: str | None,
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    config: ProxyConfig,
) -> list[Item]:
    """Plan every item; URL parameters of an ``_msearch`` apply to all items alike."""
    items = []
    for header, body in pairs:
        try:
            plan: SearchPlan | Skip | ConfigError = plan_search(
                _target(header, path_target), {}, body, config
            )
        except ConfigError as exc:
            plan = exc
        items.append(Item(header=header, plan=plan))
    return items


def forward_pairs(items: Sequence[Item]) -> list[dict[str, Any]]:
    """Header and body lines of the items to send, in order, as one flat list."""
    lines: list[dict[str, Any]] = []
    for item in items:
        body = item.forward_body()
        if body is not None:
            lines += [item.header, body]
    return lines


def to_ndjson(lines: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def place_responses(items: Sequence[Item], sent: Sequence[Any]) -> list[Any]:
    """The engine's ``responses`` for the sent items, with the refused items' errors put back in
    their places: one entry per item of the request, in its order."""
    answers = iter(sent)
    placed: list[Any] = []
    for item in items:
        if isinstance(item.plan, ConfigError):
            placed.append(error_json(str(item.plan)))
        else:
            placed.append(next(answers, None))
    return placed
