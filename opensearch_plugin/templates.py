"""The versioned JSON templates in ``opensearch_plugin/resources/`` and how they are filled.

Every object the installers create (pipelines, ml-commons connector, model group and model,
Elasticsearch inference endpoint) is a file there, named ``<what>.v<N>.json``, so what gets sent
to a cluster can be read and reviewed without reading code, and a change to it is a new version.

A placeholder is a whole JSON string ``"{{name}}"``; it is replaced by the value (any JSON
type, so ``"{{window}}"`` becomes ``50``; an object key becomes the value's text), and an
object member whose value is ``None`` is dropped (optional settings). ``${...}`` is left alone:
that is the engines' own template syntax (ml-commons ``${parameters.query}``, Elasticsearch
``${input}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

TEMPLATE_VERSION = 1
_PLACEHOLDER = re.compile(r"^\{\{([a-z_]+)\}\}$")


def load(name: str, version: int = TEMPLATE_VERSION) -> Any:
    """The parsed template ``resources/<name>.v<version>.json``."""
    path = resources.files("opensearch_plugin") / "resources" / f"{name}.v{version}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with every ``"{{name}}"`` replaced by ``values[name]``; members that come
    out ``None`` are dropped. A placeholder without a value is a bug: ``KeyError``."""
    if isinstance(template, str):
        found = _PLACEHOLDER.match(template)
        return values[found.group(1)] if found else template
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        filled = {str(fill(key, values)): fill(value, values) for key, value in template.items()}
        return {key: value for key, value in filled.items() if value is not None}
    return template


def render(name: str, values: Mapping[str, Any], version: int = TEMPLATE_VERSION) -> Any:
    """``fill(load(name, version), values)``."""
    return fill(load(name, version), values)
