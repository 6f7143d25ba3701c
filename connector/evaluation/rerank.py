"""Reranking the candidates through a running scoring server (``erank_contract.client``).

Every query's candidates go in one ``Rerank`` request, with their first-stage scores so the
server fuses them (``hybrid_score``). The alpha sweep asks the server again per alpha rather
than fusing here: the server's fusion is the only one in the project. The requests of one query
go one after another, the first doing the model's work and the rest answered from the server's
score cache (fusion weight is not part of its key), while ``batch_size`` queries are in flight
together so the engine batches documents of several queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from connector.evaluation.firststage import Candidate, Candidates
from erank_contract.client import AsyncRerankerClient
from erank_contract.v1 import reranker_pb2 as pb

Responses = dict[str, dict[float, pb.RerankResponse]]  # query id -> alpha -> the server's answer


@dataclass(frozen=True)
class RerankOptions:
    """What each ``Rerank`` request carries, and how many queries are in flight at once."""

    instruction: str = ""  # empty: the preset's, else the server's default instruction
    instruction_preset: str = ""  # a name the server knows (GetModelInfo.instruction_presets)
    truncate_length: int = 2048  # the paper's setting
    alpha: float = 0.2  # the server's default weight of the first stage in the hybrid score
    sweep: tuple[float, ...] = ()
    batch_size: int = 4
    timeout: float = 600.0

    @property
    def alphas(self) -> tuple[float, ...]:
        """``alpha`` first (its request does the model's work), then the rest of the sweep."""
        return (self.alpha, *(a for a in self.sweep if a != self.alpha))


def request(
    query: str, candidates: list[Candidate], options: RerankOptions, alpha: float
) -> pb.RerankRequest:
    return pb.RerankRequest(
        query=query,
        instruction=options.instruction,
        instruction_preset=options.instruction_preset,
        documents=[
            pb.Document(id=c.doc_id, text=c.text, first_stage_score=c.score) for c in candidates
        ],
        truncate_length=options.truncate_length,
        alpha=alpha,
        # An evaluation measures the model's trained behaviour: never a reasoning cut at the
        # deadline (a call that runs out of time fails instead).
        deadline_policy=pb.DEADLINE_POLICY_FAIL,
    )


async def rerank_all(
    client: AsyncRerankerClient,
    queries: Mapping[str, str],
    candidates: Candidates,
    options: RerankOptions,
    console: Console | None = None,
) -> Responses:
    """The server's responses for every query that has candidates, one per alpha."""
    limit = asyncio.Semaphore(options.batch_size)
    todo = [qid for qid in queries if candidates.get(qid)]
    responses: Responses = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("reranking queries", total=len(todo))

        async def one(qid: str) -> None:
            async with limit:
                answers = {}
                for alpha in options.alphas:
                    req = request(queries[qid], candidates[qid], options, alpha)
                    answers[alpha] = await client.rerank(req, timeout=options.timeout)
                responses[qid] = answers
                progress.advance(task)

        await asyncio.gather(*(one(qid) for qid in todo))
    return {qid: responses[qid] for qid in todo}


def usage(responses: Responses) -> dict[str, int]:
    """Engine work over all requests; ``sweep_cache_misses`` counts documents that the sweep's
    extra requests sent to the engine again (0 while the server's score cache is on)."""
    total = {
        "prompt_tokens": 0,
        "generated_tokens": 0,
        "cached_prompt_tokens": 0,
        "cache_hits": 0,
        "cache_misses": 0,
        "sweep_cache_misses": 0,
    }
    for answers in responses.values():
        for position, response in enumerate(answers.values()):
            u = response.usage
            total["prompt_tokens"] += u.prompt_tokens
            total["generated_tokens"] += u.generated_tokens
            total["cached_prompt_tokens"] += u.cached_prompt_tokens
            total["cache_hits"] += u.cache_hits
            total["cache_misses"] += u.cache_misses
            if position:
                total["sweep_cache_misses"] += u.cache_misses
    return total
