"""The REST front's request bodies, without a server: every integer is checked at the edge.

A value that a ``uint32`` of the gRPC request cannot hold must be a validation error naming its
field (a 400), never a ``ValueError`` while building the request (a 500 that also closes the
client's connection). Hypothesis tries any integer in every integer field of every route.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from connector.rest.cohere import CohereBody, ErankOptions, RerankBody, RerankBodyV2
from connector.rest.tei import TeiBody
from connector.results import COMPLETIONS, completions_json
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import UINT32_MAX

# (route's body, field, smallest value it takes)
INTEGER_FIELDS: list[tuple[type[CohereBody], str, int]] = [
    (model, name, lowest)
    for model in (RerankBody, RerankBodyV2)
    for name, lowest in (("top_n", 1), ("rank_constant", 1), ("passage_overlap", 0))
] + [(RerankBodyV2, "max_tokens_per_doc", 1), (RerankBodyV2, "priority", 0)]
integers = st.one_of(st.integers(), st.integers(-1, 2), st.integers(UINT32_MAX - 1, UINT32_MAX + 1))


@given(st.sampled_from(INTEGER_FIELDS), integers)
def test_every_integer_is_range_checked(
    field: tuple[type[CohereBody], str, int], value: int
) -> None:
    model, name, lowest = field
    raw = json.dumps({"query": "q", "documents": ["a"], name: value})
    try:
        body = model.model_validate_json(raw)
    except ValidationError as err:
        assert [e["loc"] for e in err.errors()] == [(name,)]
        assert not lowest <= value <= UINT32_MAX
        return
    assert lowest <= value <= UINT32_MAX
    body.to_proto()  # builds: the value fits its uint32


@given(st.integers(0, 10_000), st.sampled_from(["text", "id", "first_stage_score"]))
def test_grpc_fields_map_to_each_routes_names(index: int, member: str) -> None:
    grpc_field = f"documents[{index}].{member}"
    v1 = f"first_stage_scores[{index}]" if member == "first_stage_score" else f"documents[{index}]"
    assert RerankBody.rest_field(grpc_field) == RerankBodyV2.rest_field(grpc_field) == v1
    assert TeiBody.rest_field(grpc_field) == f"texts[{index}]"
    assert TeiBody.rest_field("documents") == "texts"
    assert RerankBodyV2.rest_field("truncate_length") == "max_tokens_per_doc"
    assert RerankBody.rest_field("truncate_length") == "truncate_length"


MODELS: list[type[BaseModel]] = [RerankBody, RerankBodyV2, TeiBody]


@given(st.sampled_from(MODELS), st.text(min_size=200, max_size=400))
def test_messages_never_quote_a_long_value(model: type[BaseModel], value: str) -> None:
    """A wrong type or value in any field: the message names the field, never the value."""
    for name in ("query", "documents", "texts", "top_n", "fusion", "truncation_direction"):
        try:
            model.model_validate_json(json.dumps({name: value}))
        except ValidationError as err:
            assert all(value not in e["msg"] for e in err.errors())


def test_the_budget_fields_docs_opensearch_names_are_the_fronts() -> None:
    """docs/OPENSEARCH.md's REST API: every budget key it names is a request field of both
    Cohere routes, every completions key one the answer has, every completion a name results
    carry; a renamed field fails here before a reader trusts the doc."""
    doc = (Path(__file__).parent.parent / "docs" / "OPENSEARCH.md").read_text()
    bullet = doc[doc.index("- The call's budget:") :].split("\n\n")[0]
    for name in ("budget_ms", "on_budget", "finish_in_background"):
        assert f'"{name}"' in bullet and name in ErankOptions.model_fields
    assert ErankOptions.model_fields["budget_ms"].metadata[-1].le == int(
        bullet.split('"budget_ms"` (1..')[1].split(";")[0]
    )
    counts = bullet.split('"completions": {')[1].split("}")[0]
    named = [key.strip().strip('"') for key in counts.replace("\n", " ").split(",")]
    assert named == list(completions_json(pb.RerankResponse()))
    for completion in COMPLETIONS:
        assert f"`{completion}`" in bullet
