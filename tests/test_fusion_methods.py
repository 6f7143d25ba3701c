"""The three fusion methods (zscore, minmax, rrf): invariants, and numbers computed independently.

The reference computations below are written here, loop by loop in plain Python (``statistics``
for the z-scores), not with :mod:`erank.fusion`'s numpy code, so a shared mistake is unlikely.
"""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erank.fusion import DEFAULT_RANK_CONSTANT, hybrid_scores, minmax, ranks
from erank.settings import load_settings
from erank.validation import InvalidRequest, validate
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb
from erank_contract.vocabulary import FusionName

METHODS: tuple[FusionName, ...] = ("zscore", "minmax", "rrf")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# Scores on a 1e-3 grid: distinct scores stay distinct through every normalisation, so order
# properties can be checked exactly.
gridded = st.integers(-1_000_000, 1_000_000).map(lambda v: v / 1000)
pairs = st.lists(st.tuples(gridded, gridded), min_size=1, max_size=25)
methods = st.sampled_from(METHODS)
alphas = st.floats(0, 1)
ks = st.integers(1, 1000)


def reference(
    first: list[float], rank: list[float], alpha: float, method: FusionName, k: int
) -> list[float]:
    """Each method written out by hand from its definition."""

    def z(xs: list[float]) -> list[float]:
        mean, sd = statistics.fmean(xs), statistics.pstdev(xs)
        return [0.0 if sd == 0 else (x - mean) / sd for x in xs]

    def mm(xs: list[float]) -> list[float]:
        low, high = min(xs), max(xs)
        return [1.0 if high - low < 1e-6 else (x - low) / (high - low) for x in xs]

    def r(xs: list[float]) -> list[int]:
        return [1 + sum(1 for y in xs if y > x) for x in xs]

    if method == "rrf":
        ranked = zip(r(first), r(rank), strict=True)
        return [alpha / (k + a) + (1 - alpha) / (k + b) for a, b in ranked]
    norm = z if method == "zscore" else mm
    return [alpha * a + (1 - alpha) * b for a, b in zip(norm(first), norm(rank), strict=True)]


def order(scores: list[float]) -> list[int]:
    """Positions best first, ties by input order (as erank/ranking.py orders)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def test_model_card_example_is_the_zscore_default() -> None:
    hybrid = hybrid_scores([46.7, 2.3, 1.5], [4.84, 2.98, 0.0])
    assert [round(h, 2) for h in hybrid] == [1.18, 0.01, -1.19]


def test_minmax_by_hand() -> None:
    # mm(first) = [1, 0.5, 0], mm(rank) = [0, 0.5, 1]; alpha 0.2
    assert hybrid_scores([10.0, 5.0, 0.0], [0.0, 5.0, 10.0], 0.2, "minmax") == pytest.approx(
        [0.2, 0.5, 0.8]
    )


def test_minmax_equal_scores_are_one_as_in_elasticsearch() -> None:
    assert minmax([3.0, 3.0 + 5e-7]).tolist() == [1.0, 1.0]  # within 1e-6: "equal"
    assert minmax([3.0, 3.0 + 2e-6]).tolist() == [0.0, 1.0]
    assert minmax([42.0]).tolist() == [1.0]


def test_rrf_by_hand() -> None:
    # first-stage ranks 1, 2, 2 (a tie shares the best rank), ERank ranks 3, 1, 2; k 60
    fused = hybrid_scores([9.0, 4.0, 4.0], [0.5, 8.0, 6.0], 0.5, "rrf")
    assert fused == pytest.approx([0.5 / 61 + 0.5 / 63, 0.5 / 62 + 0.5 / 61, 0.5 / 62 + 0.5 / 62])
    assert hybrid_scores([1.0], [1.0], 0.3, "rrf", rank_constant=10) == pytest.approx([1 / 11])


def test_ranks_are_competition_ranks() -> None:
    assert ranks([5.0, 7.0, 5.0, 1.0, 7.0]).tolist() == [3, 1, 3, 5, 1]
    assert ranks([0.0, -0.0]).tolist() == [1, 1]


def test_unknown_method_and_bad_constant_are_refused() -> None:
    with pytest.raises(ValueError, match="known: zscore, minmax, rrf"):
        hybrid_scores([1.0], [1.0], 0.2, "borda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank_constant"):
        hybrid_scores([1.0], [1.0], 0.2, "rrf", rank_constant=0)


@given(pairs, alphas, methods, ks)
def test_matches_the_reference_computation(
    case: list[tuple[float, float]], alpha: float, method: FusionName, k: int
) -> None:
    first, rank = [p[0] for p in case], [p[1] for p in case]
    expected = reference(first, rank, alpha, method, k)
    assert hybrid_scores(first, rank, alpha, method, k) == pytest.approx(expected, abs=1e-9)


@given(pairs, alphas, methods, st.randoms(use_true_random=False))
def test_permutation_invariant(
    case: list[tuple[float, float]], alpha: float, method: FusionName, rnd: random.Random
) -> None:
    shuffled = list(range(len(case)))
    rnd.shuffle(shuffled)
    fused = hybrid_scores([p[0] for p in case], [p[1] for p in case], alpha, method)
    again = hybrid_scores(
        [case[i][0] for i in shuffled], [case[i][1] for i in shuffled], alpha, method
    )
    assert again == pytest.approx([fused[i] for i in shuffled], abs=1e-12)


@given(pairs, alphas, methods)
def test_equal_pairs_get_equal_scores(
    case: list[tuple[float, float]], alpha: float, method: FusionName
) -> None:
    case = [*case, case[0]]  # a tie with the first document
    fused = hybrid_scores([p[0] for p in case], [p[1] for p in case], alpha, method)
    assert fused[-1] == pytest.approx(fused[0], abs=1e-12)


@given(finite, finite, alphas, ks)
def test_single_document(first: float, rank: float, alpha: float, k: int) -> None:
    assert hybrid_scores([first], [rank], alpha, "zscore") == [0.0]
    assert hybrid_scores([first], [rank], alpha, "minmax") == pytest.approx([1.0])
    assert hybrid_scores([first], [rank], alpha, "rrf", k) == pytest.approx([1 / (k + 1)])


@given(finite, finite, st.integers(1, 30), alphas, methods)
def test_all_equal_scores_tie_every_document(
    first: float, rank: float, n: int, alpha: float, method: FusionName
) -> None:
    fused = hybrid_scores([first] * n, [rank] * n, alpha, method)
    assert len(set(fused)) == 1


@given(pairs, methods)
def test_alpha_zero_orders_by_erank_and_one_by_first_stage(
    case: list[tuple[float, float]], method: FusionName
) -> None:
    first, rank = [p[0] for p in case], [p[1] for p in case]
    by_erank = [rank[i] for i in order(hybrid_scores(first, rank, 0.0, method))]
    by_first = [first[i] for i in order(hybrid_scores(first, rank, 1.0, method))]
    assert by_erank == sorted(rank, reverse=True)
    assert by_first == sorted(first, reverse=True)


@given(pairs, ks)
def test_rrf_with_alpha_half_orders_like_plain_rrf(case: list[tuple[float, float]], k: int) -> None:
    first, rank = [p[0] for p in case], [p[1] for p in case]
    plain = [1 / (k + a) + 1 / (k + b) for a, b in zip(ranks(first), ranks(rank), strict=True)]
    fused = hybrid_scores(first, rank, 0.5, "rrf", k)
    assert order(fused) == order(plain)


@given(st.lists(finite, min_size=1, max_size=30))
def test_minmax_is_finite_in_unit_interval(values: list[float]) -> None:
    normalised = minmax(values).tolist()
    assert all(0.0 <= v <= 1.0 for v in normalised)
    if max(values) - min(values) >= 1e-6:
        assert min(normalised) == 0.0 and max(normalised) == pytest.approx(1.0)


# --- the request fields (validation, no engine) ---

SETTINGS = load_settings(model="m")
DOCS = [pb.Document(id="a", text="x", first_stage_score=1.0)]


def test_request_defaults() -> None:
    params = validate(pb.RerankRequest(query="q", documents=DOCS), SETTINGS)
    assert (params.fusion, params.rank_constant) == ("zscore", DEFAULT_RANK_CONSTANT)
    assert (params.best_passage, params.passage_overlap) == (False, 0)
    best = pb.RerankRequest(
        query="q", documents=DOCS, long_documents=pb.LONG_DOCUMENTS_BEST_PASSAGE
    )
    assert validate(best, SETTINGS).passage_overlap == 2048 // 8


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"fusion": 9}, "fusion", "unknown Fusion 9"),
        ({"rank_constant": 5}, "rank_constant", "only applies to FUSION_RRF"),
        ({"fusion": pb.FUSION_RRF, "rank_constant": 0}, "rank_constant", "at least 1"),
        ({"long_documents": 7}, "long_documents", "unknown LongDocuments 7"),
        ({"passage_overlap": 8}, "passage_overlap", "only applies to LONG_DOCUMENTS_BEST"),
        (
            {"long_documents": pb.LONG_DOCUMENTS_BEST_PASSAGE, "passage_overlap": 64},
            "passage_overlap",
            "below truncate_length (64)",
        ),
    ],
)
def test_bad_fields_are_named(fields: dict[str, int], field: str, words: str) -> None:
    request = pb.RerankRequest(query="q", documents=DOCS, truncate_length=64)
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(InvalidRequest) as err:
        validate(request, SETTINGS)
    assert any(v.field == field and words in v.description for v in err.value.violations)


# --- end to end on the real engine ---


@pytest.mark.engine
@pytest.mark.parametrize(
    ("fusion", "name"),
    [(pb.FUSION_UNSPECIFIED, "zscore"), (pb.FUSION_MINMAX, "minmax"), (pb.FUSION_RRF, "rrf")],
)
async def test_server_fuses_with_the_method_asked_and_says_which(
    tiny_client: AsyncRerankerClient, fusion: pb.Fusion.ValueType, name: FusionName
) -> None:
    documents = [
        pb.Document(id=f"d{i}", text=f"fusion text {i} about ranking", first_stage_score=s)
        for i, s in enumerate([4.0, 9.5, 1.25, 9.5, 0.0])
    ]
    request = pb.RerankRequest(query="which fusion", documents=documents, alpha=0.4, fusion=fusion)
    if fusion == pb.FUSION_RRF:
        request.rank_constant = 5
    response = await tiny_client.rerank(request)
    assert pb.Fusion.Name(response.fusion) == f"FUSION_{name.upper()}"
    by_index = sorted(response.results, key=lambda r: r.index)
    expected = reference(
        [d.first_stage_score for d in documents],
        [r.rank_score for r in by_index],
        0.4,
        name,
        5 if name == "rrf" else DEFAULT_RANK_CONSTANT,
    )
    assert [r.hybrid_score for r in by_index] == pytest.approx(expected, abs=1e-9)
    assert [r.index for r in response.results] == order(expected)
    unfused = await tiny_client.rerank(
        pb.RerankRequest(query="which fusion", documents=[pb.Document(id="x", text="t")])
    )
    assert unfused.fusion == pb.FUSION_UNSPECIFIED
