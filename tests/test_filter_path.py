"""``filter_path`` as the proxy applies it to reranked answers (connector/rewrite/filterpath.py).

The real engines are the reference: ``tests/proxy_edges.py`` compares this implementation
with every pinned engine's own filtering on the same answer. Here: the rules on examples and,
with hypothesis, the properties any answer must keep (includes and excludes split the leaves,
an unmatched exclude changes nothing, a kept value is the answer's own).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.rewrite.filterpath import FilterPath

ANSWER: dict[str, Any] = {
    "took": 3,
    "_shards": {"total": 1, "failed": 0},
    "hits": {
        "total": {"value": 2, "relation": "eq"},
        "hits": [
            {"_id": "a", "_score": 2.0, "_source": {"text": "x", "n": 1}},
            {"_id": "b", "_score": 1.0, "_source": {"n": 2}},
        ],
    },
    "ext": {"erank": {"status": "reranked"}},
    "a.b": {"c": 1},
}


def trim(paths: str, body: dict[str, Any] = ANSWER, elasticsearch: bool = True) -> Any:
    return FilterPath.parse(paths).apply(body, elasticsearch)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ("hits.hits._id", {"hits": {"hits": [{"_id": "a"}, {"_id": "b"}]}}),
        ("hits.hits._source.text", {"hits": {"hits": [{"_source": {"text": "x"}}]}}),
        ("**.value", {"hits": {"total": {"value": 2}}}),
        ("*.erank", {"ext": {"erank": {"status": "reranked"}}}),
        ("_shards.*,-_shards.total", {"_shards": {"failed": 0}}),
        ("a\\.b.c", {"a.b": {"c": 1}}),
        ("nothing.at.all", {}),
        ("took,took.more", {"took": 3}),  # a shorter path takes the whole value
        ("-hits,-ext,-_shards,-a\\.b", {"took": 3}),
        (
            "-hits.hits.*",
            {k: v for k, v in ANSWER.items() if k != "hits"}
            | {"hits": {"total": {"value": 2, "relation": "eq"}}},
        ),
    ],
)
def test_examples(paths: str, expected: Any) -> None:
    assert trim(paths) == expected


def test_double_wildcard_needs_one_level_before_the_name() -> None:
    """``**.took`` does not match the top-level ``took``: the engines' rule, not a typo."""
    assert trim("**.took") == {}
    assert trim("**.total") == {"_shards": {"total": 1}, "hits": {"total": ANSWER["hits"]["total"]}}


def test_empty_arrays_under_excludes_differ_by_engine() -> None:
    empty = {"hits": {"total": 0, "hits": []}}
    assert trim("-hits.hits._source", empty, elasticsearch=True) == empty
    assert trim("-hits.hits._source", empty, elasticsearch=False) == {"hits": {"total": 0}}
    assert trim("hits.hits._id", empty, elasticsearch=True) == {}


NAMES = st.sampled_from(["a", "b", "c", "ab"])
LEAVES = st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.none())
DOCS = st.recursive(
    LEAVES,
    lambda inner: st.dictionaries(NAMES, inner, min_size=1, max_size=3),
    max_leaves=12,
).filter(lambda d: isinstance(d, dict))
SEGMENTS = st.one_of(NAMES, st.sampled_from(["*", "a*", "**", "*b"]))
PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map(".".join)


def leaves(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        return {leaf for k, v in value.items() for leaf in leaves(v, (*prefix, k))}
    return {(prefix, repr(value))}


@given(DOCS, PATHS)
def test_include_and_exclude_split_the_leaves(doc: dict[str, Any], path: str) -> None:
    kept = leaves(trim(path, doc))
    dropped = leaves(trim(f"-{path}", doc))
    assert kept | dropped == leaves(doc) and not kept & dropped


@given(DOCS)
def test_excluding_what_is_not_there_changes_nothing(doc: dict[str, Any]) -> None:
    assert trim("-zz", doc) == doc
    assert trim("*", doc) == doc


@given(DOCS, PATHS, st.booleans())
def test_kept_values_are_the_answers_own(doc: dict[str, Any], path: str, es: bool) -> None:
    assert leaves(trim(path, doc, es)) <= leaves(doc)
    assert leaves(trim(f"-{path}", doc, es)) <= leaves(doc)
