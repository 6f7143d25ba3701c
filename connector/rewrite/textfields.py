"""Which fields a reranked search asks the engine for, so that every hit carries its text, and
which of them it strips again, so that the user gets exactly the ``_source``, ``fields`` and
``stored_fields`` they asked for.

A hit carries the configured fields when its whole ``_source`` comes back. Otherwise (``_source``
off or filtered, ``stored_fields``) they are asked for through the ``fields`` option, unless the
user's own ``fields`` already returns them, and stripped from each hit after. A field the user
names in ``stored_fields`` or ``docvalue_fields`` is not stripped: those values come back under
the hits' ``fields`` too, and stripping ours would take theirs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any


def is_true(value: object) -> bool:
    """A boolean option as the engines read it: ``true``, or a URL flag given bare or ``true``."""
    return value is True or (isinstance(value, str) and value.lower() in ("", "true"))


def text_fields(
    body: Mapping[str, Any], params: Mapping[str, str], wanted: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(configured fields to add to the search's fields option, those of them to strip from
    each hit)``; both empty when the whole ``_source`` comes back."""
    if _source_is_whole(body, params):
        return (), ()
    return _fields_to_add(body, params, wanted)


def _source_is_whole(body: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    """Whether hits will carry their whole ``_source`` (so configured fields are in it)."""
    if any(k in params for k in ("_source_includes", "_source_excludes", "stored_fields")):
        return False
    if "_source" in params:
        return is_true(params["_source"])
    if "stored_fields" in body:
        return False
    source = body.get("_source", True)
    return source is True


def _asked(body: Mapping[str, Any], params: Mapping[str, str], key: str) -> list[str]:
    """The field names or patterns of a body option (``fields``, ``stored_fields``,
    ``docvalue_fields``: a name, or a list of names or ``{"field": …}``) and of its URL
    parameter (comma-separated)."""
    value = body.get(key)
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = [
        i if isinstance(i, str) else i.get("field") for i in items if isinstance(i, str | dict)
    ]
    names += params[key].split(",") if key in params else []
    return [n for n in names if isinstance(n, str)]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _fields_to_add(
    body: Mapping[str, Any], params: Mapping[str, str], wanted: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(configured fields to ask for through fields, those of them to strip from the hits)``:
    the ones the user's ``fields`` option does not already return; each is stripped after unless
    the user's ``stored_fields`` or ``docvalue_fields`` names it (their values come back in the
    hits' ``fields`` too, where they would be lost with ours)."""
    add = tuple(w for w in wanted if not _matches(w, _asked(body, {}, "fields")))
    theirs = _asked(body, params, "stored_fields") + _asked(body, params, "docvalue_fields")
    return add, tuple(w for w in add if not _matches(w, theirs))
