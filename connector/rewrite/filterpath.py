"""``filter_path``, applied by the proxy the way the engine applies it.

A reranked search needs the engine's whole answer (the hits' text and scores), so the proxy
takes ``filter_path`` off the forwarded search and trims the reranked answer itself. The rules
are Elasticsearch's and OpenSearch's (``FilterPath`` / ``FilterPathBasedFilter`` on Jackson's
filtering generator): comma-separated paths, ``.`` between field names (``\\.`` for a dot inside
one), ``*`` inside a name, ``**`` for any number of levels below, a leading ``-`` to exclude.
Arrays are transparent (their elements are filtered with the same paths); an object or array
left with nothing in it is dropped, but a matched field keeps its whole value; the top-level
object always stays (``{}`` when nothing matched). With both kinds, includes apply first. One
difference between the engines (their Jackson versions), checked on every pinned version: with
excludes, Elasticsearch keeps an array or object that was empty to begin with (``"hits": []``
of a search without hits), OpenSearch drops it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_DOT = re.compile(r"(?<!\\)\.")
_NOTHING = object()  # what a filtered-out value becomes (dropped from its parent)


@dataclass
class _Node:
    """One segment of the compiled paths: a name or glob; ``final`` when a path ends here."""

    pattern: str
    final: bool = False
    children: dict[str, _Node] = field(default_factory=dict)

    def insert(self, segments: Sequence[str]) -> None:
        head, rest = segments[0], segments[1:]
        if not rest:
            self.children[head] = _Node(head, final=True)
            return
        child = self.children.setdefault(head, _Node(head))
        if not child.final:  # a shorter path already takes the whole value
            child.insert(rest)


def _compile(paths: Sequence[str]) -> _Node | None:
    root = _Node("")
    for path in paths:
        if path:
            root.insert([s.replace("\\.", ".") for s in _DOT.split(path)])
    return root if root.children else None


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """The engines' glob: ``*`` is any run of characters, nothing else is special."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _match(name: str, nodes: Sequence[_Node]) -> bool | list[_Node]:
    """True when a path ends at ``name``; else the nodes to match ``name``'s contents with."""
    following: list[_Node] = []
    for node in nodes:
        for pattern, child in node.children.items():
            if pattern == name or ("*" in pattern and _glob(pattern).fullmatch(name)):
                if child.final:
                    return True
                following.append(child)
        if node.pattern == "**":
            following.append(node)
    return following


def _filter(value: Any, nodes: Sequence[_Node], inclusive: bool, keep_empty: bool) -> Any:
    if isinstance(value, (dict, list)) and not value:
        return value if keep_empty and not inclusive else _NOTHING
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, inner in value.items():
            found = _match(key, nodes)
            if found is True:
                keep = inner if inclusive else _NOTHING
            elif not found:
                keep = _NOTHING if inclusive else inner
            else:
                keep = _filter(inner, found, inclusive, keep_empty)
            if keep is not _NOTHING:
                kept[key] = keep
        return kept if kept else _NOTHING
    if isinstance(value, list):
        items = [_filter(item, nodes, inclusive, keep_empty) for item in value]
        items = [item for item in items if item is not _NOTHING]
        return items if items else _NOTHING
    return _NOTHING if inclusive else value


@dataclass(frozen=True)
class FilterPath:
    """A parsed ``filter_path`` URL parameter."""

    includes: tuple[str, ...]
    excludes: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> FilterPath:
        paths = [p.strip() for p in value.split(",")]
        return cls(
            includes=tuple(p for p in paths if p and not p.startswith("-")),
            excludes=tuple(p[1:] for p in paths if p.startswith("-") and p[1:]),
        )

    def apply(self, body: dict[str, Any], elasticsearch: bool) -> dict[str, Any]:
        """``body`` as the engine (Elasticsearch, else OpenSearch) would have written it with
        this ``filter_path``."""
        out: Any = body
        for paths, inclusive in ((self.includes, True), (self.excludes, False)):
            root = _compile(paths)
            if root is not None:
                out = _filter(out, [root], inclusive, elasticsearch)
                if out is _NOTHING:
                    out = {}
        return dict(out)
